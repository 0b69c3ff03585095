package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"time"
)

// CodeVersionEnv overrides the detected code version (e.g. on cluster nodes without git, or
// to pin the identity in tests).
const CodeVersionEnv = "ENFLOW_CODE_VERSION"

// DetectCode identifies the running code, in order of preference:
//
//  1. $ENFLOW_CODE_VERSION, verbatim;
//  2. the VCS stamp of the binary (debug.ReadBuildInfo vcs.revision / vcs.modified; absent when
//     built with -buildvcs=false, as the project's GOFLAGS do);
//  3. `git rev-parse HEAD` in dir (the working directory when ""), "+dirty" when tracked files
//     differ from HEAD (`git status --porcelain --untracked-files=no`);
//  4. the SHA-256 of the running executable.
//
// The git revision is recorded with every result regardless of which one decided Version.
func DetectCode(ctx context.Context, dir string) CodeInfo {
	var ci CodeInfo
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				ci.GitRev, ci.Source = s.Value, "buildinfo"
			case "vcs.modified":
				ci.Dirty = s.Value == "true"
			}
		}
	}
	if ci.GitRev == "" {
		if rev, dirty, ok := gitRevision(ctx, dir); ok {
			ci.GitRev, ci.Dirty, ci.Source = rev, dirty, "git"
		}
	}
	if ci.GitRev != "" {
		ci.Version = "git:" + ci.GitRev
		if ci.Dirty {
			ci.Version += "+dirty"
		}
	}
	if ci.Version == "" {
		if sum := executableHash(); sum != "" {
			ci.Version, ci.Source = "bin:"+sum, "binary"
		} else {
			ci.Version, ci.Source = "unknown", "none"
		}
	}
	if v := os.Getenv(CodeVersionEnv); v != "" {
		ci.Version, ci.Source = v, "env"
	}
	return ci
}

func gitRevision(ctx context.Context, dir string) (rev string, dirty, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	rev, err := run("rev-parse", "HEAD")
	if err != nil || len(rev) < 7 {
		return "", false, false
	}
	st, err := run("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return rev, false, true
	}
	return rev, st != "", true
}

func executableHash() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := os.Open(exe)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
