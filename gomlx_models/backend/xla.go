//go:build xla

package backend

// Built with -tags xla: link the XLA/PJRT backend (needs cgo and a PJRT plugin at run time).
import _ "github.com/gomlx/gomlx/backends/xla"

func init() { xlaAvailable = true }
