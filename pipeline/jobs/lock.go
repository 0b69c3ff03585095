package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Locking. Every unit has a lock file STATE/units/<id>/lock. A scheduler runs a unit only
// while it holds the unit's lock, and a scheduler that finds a unit locked SKIPS it (it does
// not wait): the holder will finish it, and the next scheduled run picks up whatever is left.
//
//   - LockFlock (the default where the file system supports it): flock(2) LOCK_EX|LOCK_NB on
//     the lock file. The kernel drops the lock when the holder dies, so a flock lock cannot go
//     stale; the file's content (holder host, pid, start time) is informational. The runner
//     hands the locked file to the enflow child process it starts, so the lock stays held
//     for as long as the child lives, even if the scheduler itself is killed.
//   - LockExclusive (fallback on file systems without flock, e.g. some network file systems,
//     or forced): the lock is the file lock.excl, created with O_EXCL, holding the holder's
//     JSON; the holder refreshes its modification time every StaleAfter/4. A lock is stale,
//     and is broken, when its holder is on this host and its pid is gone, or when its
//     heartbeat is older than StaleAfter.
type LockMode string

// Lock modes.
const (
	LockAuto      LockMode = ""      // flock, falling back to exclusive files if unsupported
	LockFlock     LockMode = "flock" // flock only
	LockExclusive LockMode = "excl"  // exclusive lock files with heartbeat
)

// DefaultStaleAfter is the heartbeat age after which an exclusive lock file is stale.
const DefaultStaleAfter = 10 * time.Minute

// ErrLocked is returned (wrapped, with the holder) by TryLock when another process holds the
// lock.
var ErrLocked = errors.New("locked by another scheduler")

// errNoFlock marks a file system without flock support.
var errNoFlock = errors.New("flock not supported")

// Holder describes a lock holder; it is written into the lock file.
type Holder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Unit    string    `json:"unit,omitempty"`
	Mode    LockMode  `json:"mode"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s pid %d since %s", h.Host, h.PID, h.Started.Format(time.RFC3339))
}

// Lock is a held lock.
type Lock struct {
	path string // lock file (flock) or lock.excl
	mode LockMode
	f    *os.File // flock: the locked file

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// LockOptions configures TryLock.
type LockOptions struct {
	Mode       LockMode
	StaleAfter time.Duration // exclusive mode; default DefaultStaleAfter
	Holder     Holder
}

// TryLock takes the lock at path without waiting. It returns an error wrapping ErrLocked when
// another process holds it.
func TryLock(path string, o LockOptions) (*Lock, error) {
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	switch o.Mode {
	case LockFlock, LockAuto:
		l, err := tryFlock(path, o.Holder)
		if err == nil || o.Mode == LockFlock || !errors.Is(err, errNoFlock) {
			return l, err
		}
		return tryExclusive(path+".excl", o)
	case LockExclusive:
		return tryExclusive(path+".excl", o)
	}
	return nil, fmt.Errorf("jobs: unknown lock mode %q", o.Mode)
}

func tryFlock(path string, h Holder) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jobs: lock %s: %w", path, err)
	}
	if err := flockTry(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, readHolder(path))
		}
		return nil, fmt.Errorf("jobs: lock %s: %w", path, err)
	}
	h.Mode = LockFlock
	if b, err := json.Marshal(h); err == nil {
		// Informational only; a failure here does not matter for mutual exclusion.
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt(append(b, '\n'), 0)
		}
	}
	return &Lock{path: path, mode: LockFlock, f: f}, nil
}

// readHolder describes the holder recorded in a lock file ("unknown holder" if unreadable).
func readHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown holder"
	}
	var h Holder
	if json.Unmarshal(b, &h) != nil || h.PID == 0 {
		return "unknown holder"
	}
	return "held by " + h.String()
}

func tryExclusive(path string, o LockOptions) (*Lock, error) {
	o.Holder.Mode = LockExclusive
	data, err := json.Marshal(o.Holder)
	if err != nil {
		return nil, fmt.Errorf("jobs: lock %s: %w", path, err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.Write(append(data, '\n'))
			cerr := f.Close()
			if werr != nil || cerr != nil {
				os.Remove(path)
				return nil, fmt.Errorf("jobs: lock %s: %w", path, errors.Join(werr, cerr))
			}
			l := &Lock{path: path, mode: LockExclusive, stop: make(chan struct{}), done: make(chan struct{})}
			go l.heartbeat(o.StaleAfter / 4)
			return l, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("jobs: lock %s: %w", path, err)
		}
		stale, why, content := exclusiveStale(path, o.StaleAfter)
		if !stale {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, why)
		}
		if err := breakStale(path, content); err != nil {
			return nil, fmt.Errorf("jobs: breaking stale lock %s (%s): %w", path, why, err)
		}
	}
	return nil, fmt.Errorf("%w (%s: contended)", ErrLocked, path)
}

// exclusiveStale inspects an exclusive lock file.
func exclusiveStale(path string, staleAfter time.Duration) (stale bool, why string, content []byte) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, "lock vanished", nil // retry the create
	}
	content, _ = os.ReadFile(path)
	var h Holder
	_ = json.Unmarshal(content, &h)
	age := time.Since(fi.ModTime())
	host, _ := os.Hostname()
	switch {
	case h.PID > 0 && h.Host == host && !processAlive(h.PID):
		return true, fmt.Sprintf("holder %s is dead", h), content
	case age > staleAfter:
		return true, fmt.Sprintf("heartbeat %s old (> %s), holder %s", age.Round(time.Second), staleAfter, h), content
	}
	if h.PID == 0 {
		return false, fmt.Sprintf("held, heartbeat %s ago", age.Round(time.Second)), content
	}
	return false, "held by " + h.String(), content
}

// breakStale removes a stale exclusive lock whose content is still the one judged stale: it
// renames the file away (only one breaker wins the rename) and puts it back if it turns out to
// be a fresh lock taken in between.
func breakStale(path string, judged []byte) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	aside := path + ".stale-" + hex.EncodeToString(rnd[:])
	if err := os.Rename(path, aside); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // someone else broke it
		}
		return err
	}
	got, _ := os.ReadFile(aside)
	if string(got) != string(judged) {
		// A fresh lock: restore it unless another one exists already.
		if err := os.Link(aside, path); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return os.Remove(aside)
}

func (l *Lock) heartbeat(every time.Duration) {
	defer close(l.done)
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			_ = os.Chtimes(l.path, now, now)
		}
	}
}

// File returns the locked file for a child process to inherit (flock mode), or nil.
func (l *Lock) File() *os.File {
	if l == nil {
		return nil
	}
	return l.f
}

// Mode is the mode the lock was taken in.
func (l *Lock) Mode() LockMode { return l.mode }

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	var err error
	l.stopOnce.Do(func() {
		switch l.mode {
		case LockFlock:
			_ = l.f.Truncate(0)
			err = l.f.Close() // closing the last descriptor releases the flock
		case LockExclusive:
			close(l.stop)
			<-l.done
			if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
	})
	if err != nil {
		return fmt.Errorf("jobs: unlock %s: %w", l.path, err)
	}
	return nil
}

// Probe reports whether the lock at path is held by someone (without keeping it) and a
// description of the holder.
func Probe(path string, o LockOptions) (held bool, who string) {
	l, err := TryLock(path, o)
	if err == nil {
		_ = l.Unlock()
		return false, ""
	}
	if errors.Is(err, ErrLocked) {
		return true, err.Error()
	}
	return false, ""
}
