package jobs

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func holder(pid int) Holder {
	host, _ := os.Hostname()
	return Holder{Host: host, PID: pid, Started: time.Now().UTC()}
}

func TestLockModes(t *testing.T) {
	for _, mode := range []LockMode{LockFlock, LockExclusive, LockAuto} {
		t.Run(string(mode)+"-mode", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lock")
			o := LockOptions{Mode: mode, StaleAfter: time.Minute, Holder: holder(os.Getpid())}
			l1, err := TryLock(path, o)
			if err != nil {
				t.Fatal(err)
			}
			// A second lock on the same file (another open file description) must fail, also
			// from the same process.
			if l2, err := TryLock(path, o); !errors.Is(err, ErrLocked) {
				l2.Unlock()
				t.Fatalf("second TryLock: %v, want ErrLocked", err)
			} else if held, who := Probe(path, o); !held || who == "" {
				t.Errorf("Probe of a held lock: held=%v who=%q", held, who)
			}
			if err := l1.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := l1.Unlock(); err != nil {
				t.Errorf("second Unlock: %v", err)
			}
			l3, err := TryLock(path, o)
			if err != nil {
				t.Fatalf("TryLock after Unlock: %v", err)
			}
			l3.Unlock()
			if held, _ := Probe(path, o); held {
				t.Errorf("Probe: released lock reported held")
			}
		})
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestExclusiveLockStaleness(t *testing.T) {
	tests := []struct {
		name      string
		pid       int
		otherHost bool
		age       time.Duration
		wantTaken bool
	}{
		{"live holder, fresh heartbeat", os.Getpid(), false, 0, false},
		{"dead holder on this host", -1, false, 0, true},
		{"holder on another host, fresh heartbeat", 12345, true, 0, false},
		{"holder on another host, stale heartbeat", 12345, true, 2 * time.Hour, true},
		{"live holder, stale heartbeat", os.Getpid(), false, 2 * time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lock")
			pid := tc.pid
			if pid < 0 {
				pid = deadPID(t)
			}
			h := holder(pid)
			if tc.otherHost {
				h.Host = "some-other-host.invalid"
			}
			b, _ := json.Marshal(h)
			excl := path + ".excl"
			if err := os.WriteFile(excl, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.age > 0 {
				old := time.Now().Add(-tc.age)
				if err := os.Chtimes(excl, old, old); err != nil {
					t.Fatal(err)
				}
			}
			l, err := TryLock(path, LockOptions{Mode: LockExclusive, StaleAfter: time.Hour, Holder: holder(os.Getpid())})
			if tc.wantTaken {
				if err != nil {
					t.Fatalf("stale lock not broken: %v", err)
				}
				var got Holder
				b, _ := os.ReadFile(excl)
				if json.Unmarshal(b, &got) != nil || got.PID != os.Getpid() {
					t.Errorf("lock file after takeover holds %s", b)
				}
				l.Unlock()
				if _, err := os.Stat(excl); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("Unlock left %s: %v", excl, err)
				}
				return
			}
			if !errors.Is(err, ErrLocked) {
				if l != nil {
					l.Unlock()
				}
				t.Fatalf("held lock: %v, want ErrLocked", err)
			}
		})
	}
}

func TestExclusiveLockHeartbeat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := TryLock(path, LockOptions{Mode: LockExclusive, StaleAfter: 200 * time.Millisecond, Holder: holder(os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	// Well past StaleAfter, the heartbeat keeps the lock fresh.
	time.Sleep(500 * time.Millisecond)
	if _, err := TryLock(path, LockOptions{Mode: LockExclusive, StaleAfter: 200 * time.Millisecond, Holder: holder(os.Getpid())}); !errors.Is(err, ErrLocked) {
		t.Fatalf("a lock with a running heartbeat was taken over: %v", err)
	}
}
