//go:build xla

package backend

// Built with -tags xla: link the XLA/PJRT backend (needs cgo, and a PJRT plugin at run time,
// e.g. .tools/pjrt from scripts/xla/setup.sh, found by Resolve).
import (
	"os"

	"github.com/gomlx/gomlx/backends/xla"
)

func init() {
	xlaAvailable = true
	// Never let GoMLX download plugins behind the user's back; a missing plugin is an error
	// (or, for the automatic choice, SimpleGo). The variable is for child processes too.
	xla.EnableAutoInstall(false)
	if _, set := os.LookupEnv(NoAutoInstallEnvVar); !set {
		_ = os.Setenv(NoAutoInstallEnvVar, "1")
	}
}
