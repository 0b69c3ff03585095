package qm9

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
)

// maxMemberSize bounds one .xyz member (real ones are about 1–2 KiB).
const maxMemberSize = 1 << 20

// ArchiveOptions controls ReadArchive.
type ArchiveOptions struct {
	// Split assigns each molecule its split by gdb id; ids it maps to "" (the
	// uncharacterized ones) are skipped. Nil means DefaultSplit() (the standard split with
	// the built-in uncharacterized list).
	Split *Assignment
	// Progress, if set, is called after every member with the number of members read.
	Progress func(members int)
}

// ArchiveStats summarises one pass over an archive.
type ArchiveStats struct {
	Members   int            // .xyz members read
	Molecules int            // molecules passed to the callback
	Excluded  int            // members skipped as uncharacterized
	Atoms     int            // atoms in the molecules passed to the callback
	PerSplit  map[string]int // molecules per split name
}

// ReadArchive streams the official dsgdb9nsd.xyz.tar.bz2 (or any tar.bz2 of QM9 .xyz
// members): it parses the members in archive order and calls fn with each kept molecule,
// with Split set. fn owns the molecule. Reading stops at the first error, from the archive,
// a member or fn; errors name the archive and the member.
func ReadArchive(ctx context.Context, file string, opts ArchiveOptions, fn func(*molecule.Molecule) error) (ArchiveStats, error) {
	f, err := os.Open(file)
	if err != nil {
		return ArchiveStats{}, fmt.Errorf("qm9: archive: %w", err)
	}
	defer f.Close()
	return ReadArchiveFrom(ctx, f, filepath.Base(file), opts, fn)
}

// ReadArchiveFrom is ReadArchive on a stream; name is the archive name used in errors.
func ReadArchiveFrom(ctx context.Context, r io.Reader, name string, opts ArchiveOptions, fn func(*molecule.Molecule) error) (ArchiveStats, error) {
	split := opts.Split
	if split == nil {
		var err error
		if split, err = DefaultSplit(); err != nil {
			return ArchiveStats{}, err
		}
	}
	ar := archiveReader{
		name:  name,
		split: split,
		seen:  make([]bool, split.Total()),
		stats: ArchiveStats{PerSplit: map[string]int{}},
	}
	err := ar.run(ctx, r, opts.Progress, fn)
	return ar.stats, err
}

type archiveReader struct {
	name  string
	split *Assignment
	seen  []bool // by id-1
	last  string // last member read completely
	buf   bytes.Buffer
	stats ArchiveStats
}

// where names the position in the archive for an error that is not tied to a member body.
func (a *archiveReader) where() string {
	if a.last == "" {
		return "before the first member"
	}
	return "after member " + a.last
}

func (a *archiveReader) run(ctx context.Context, r io.Reader, progress func(int), fn func(*molecule.Molecule) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(3)
	if err != nil || string(magic) != "BZh" {
		return fmt.Errorf("qm9: archive %s: not a bzip2 file (missing BZh header)", a.name)
	}
	bz := bzip2.NewReader(br)
	tr := tar.NewReader(bz)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("qm9: archive %s: %s: %w", a.name, a.where(), err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if cerr := a.checkStream(ctx, bz, a.where()); cerr != nil {
				return cerr
			}
			return fmt.Errorf("qm9: archive %s: %s: truncated or corrupt: %w", a.name, a.where(), err)
		}
		if hdr.Typeflag != tar.TypeReg || !strings.HasSuffix(hdr.Name, ".xyz") {
			slog.Debug("qm9: skipping archive entry", "archive", a.name, "entry", hdr.Name)
			continue
		}
		if suspect, err := a.member(hdr, tr, fn); err != nil {
			if suspect {
				if cerr := a.checkStream(ctx, bz, "member "+hdr.Name); cerr != nil {
					return fmt.Errorf("%w (the member also failed: %v)", cerr, err)
				}
			}
			return err
		}
		a.last = hdr.Name
		if progress != nil {
			progress(a.stats.Members)
		}
	}
	if a.stats.Members == 0 {
		return fmt.Errorf("qm9: archive %s: no .xyz members", a.name)
	}
	return nil
}

// member reads and parses one member and hands it to fn. suspect reports an error caused by
// the member's content, which a corrupt compressed block can also produce.
func (a *archiveReader) member(hdr *tar.Header, tr io.Reader, fn func(*molecule.Molecule) error) (suspect bool, err error) {
	if hdr.Size > maxMemberSize {
		return true, fmt.Errorf("qm9: archive %s: member %s: %d bytes, larger than %d", a.name, hdr.Name, hdr.Size, maxMemberSize)
	}
	a.buf.Reset()
	if _, err := a.buf.ReadFrom(tr); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return false, fmt.Errorf("qm9: archive %s: member %s: truncated or corrupt: %w", a.name, hdr.Name, err)
	}
	a.stats.Members++
	m, err := ParseXYZ(hdr.Name, a.buf.Bytes())
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Archive = a.name
			return true, pe
		}
		return true, fmt.Errorf("qm9: archive %s: member %s: %w", a.name, hdr.Name, err)
	}
	if !a.split.Contains(m.ID) {
		return true, fmt.Errorf("qm9: archive %s: member %s: id %d outside QM9 (1..%d)", a.name, hdr.Name, m.ID, a.split.Total())
	}
	if a.seen[m.ID-1] {
		return true, fmt.Errorf("qm9: archive %s: member %s: id %d appears twice", a.name, hdr.Name, m.ID)
	}
	a.seen[m.ID-1] = true
	m.Split = a.split.Of(m.ID)
	if m.Split == "" {
		a.stats.Excluded++
		return false, nil
	}
	if err := fn(m); err != nil {
		return false, fmt.Errorf("qm9: archive %s: member %s: %w", a.name, hdr.Name, err)
	}
	a.stats.Molecules++
	a.stats.Atoms += m.NAtoms()
	a.stats.PerSplit[m.Split]++
	return false, nil
}

// checkStream decompresses the rest of the archive after a content error. bzip2 verifies a
// block's checksum only after emitting its data, so a corrupt block first shows up as a bad
// member or tar header; if the stream is indeed corrupt, the returned error says so.
func (a *archiveReader) checkStream(ctx context.Context, bz io.Reader, where string) error {
	buf := make([]byte, 1<<16)
	for ctx.Err() == nil {
		_, err := bz.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("qm9: archive %s: %s: truncated or corrupt: %w", a.name, where, err)
		}
	}
	return nil
}
