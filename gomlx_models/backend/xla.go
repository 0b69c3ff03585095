//go:build xla

package backend

// Built with -tags xla: link the XLA/PJRT backend (needs cgo, and a PJRT plugin at run time,
// e.g. from scripts/xla/setup.sh with PJRT_PLUGIN_LIBRARY_PATH=$PWD/.tools/pjrt).
import "github.com/gomlx/gomlx/backends/xla"

func init() {
	xlaAvailable = true
	// Never let GoMLX download plugins behind the user's back; a missing plugin is an error.
	xla.EnableAutoInstall(false)
}
