package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Call is one enflow subcommand the runner needs (train, eval, sample).
type Call struct {
	Args []string  // e.g. ["train", "--dataset", "dw4", …, "--json"]
	Log  io.Writer // receives the command's stderr (logs); may be nil
	// Hold are files the command must keep open while it runs: the unit's lock file, so the
	// lock stays held by the child even if the scheduler dies first.
	Hold []*os.File
}

// Executor runs enflow subcommands and returns their stdout (one JSON object with --json).
type Executor interface {
	Enflow(ctx context.Context, c Call) (stdout []byte, err error)
}

// ExecError is a failed enflow command.
type ExecError struct {
	Args     []string
	ExitCode int    // -1 if killed by a signal
	Tail     string // last lines of stderr
	Err      error
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("enflow %s: %v", strings.Join(e.Args, " "), e.Err)
	if e.Tail != "" {
		msg += "\n" + e.Tail
	}
	return msg
}

func (e *ExecError) Unwrap() error { return e.Err }

// Subprocess runs enflow as a child process of the binary at Path (default: the running
// executable). On Linux the child gets SIGKILL when the scheduler dies (Pdeathsig), and it
// inherits Call.Hold. Cancelling the context sends SIGTERM, on which enflow train checkpoints
// its exact position and exits; after Grace the child is killed.
type Subprocess struct {
	Path  string
	Env   []string      // extra environment variables (KEY=VALUE)
	Grace time.Duration // default 2 minutes
}

// Enflow implements Executor.
func (s *Subprocess) Enflow(ctx context.Context, c Call) ([]byte, error) {
	path := s.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("jobs: locating the enflow executable: %w", err)
		}
		path = exe
	}
	grace := s.Grace
	if grace <= 0 {
		grace = 2 * time.Minute
	}
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	var stdout bytes.Buffer
	tail := &tailBuffer{max: 4096}
	cmd.Stdout = &stdout
	if c.Log != nil {
		cmd.Stderr = io.MultiWriter(c.Log, tail)
	} else {
		cmd.Stderr = tail
	}
	cmd.ExtraFiles = c.Hold
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = grace
	setDeathSignal(cmd)

	// Pdeathsig fires when the OS thread that started the child exits: keep that thread
	// locked, and alive, until the child is gone.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		errc <- cmd.Run()
	}()
	err := <-errc
	if err != nil {
		ee := &ExecError{Args: c.Args, ExitCode: -1, Tail: tail.String(), Err: err}
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			ee.ExitCode = xe.ExitCode()
		}
		if ctx.Err() != nil {
			ee.Err = errors.Join(ctx.Err(), err)
		}
		return stdout.Bytes(), ee
	}
	return stdout.Bytes(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	// Keep whole lines only, at most 12.
	lines := strings.Split(s, "\n")
	if len(t.buf) == t.max && len(lines) > 1 {
		lines = lines[1:]
	}
	if len(lines) > 12 {
		lines = lines[len(lines)-12:]
	}
	return strings.Join(lines, "\n")
}
