//go:build !unix

package jobs

import (
	"os"
)

// flockTry reports that flock is unavailable: TryLock falls back to exclusive lock files.
func flockTry(f *os.File) error { return errNoFlock }

// processAlive cannot tell on this platform: assume alive (heartbeat age decides).
func processAlive(pid int) bool { return true }
