//go:build !linux

package jobs

import "os/exec"

// setDeathSignal is a no-op where Pdeathsig does not exist; the child then keeps the unit's
// lock (inherited) until it exits, so no other scheduler runs the unit meanwhile.
func setDeathSignal(cmd *exec.Cmd) {}
