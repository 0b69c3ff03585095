// Package backend selects the GoMLX backend used by enflow's models.
//
// It only links the pure-Go SimpleGo backend ("go"), so every binary and test builds without cgo
// and without a PJRT plugin. Importing gomlx's backends/default instead would also register XLA,
// and backends.New() would then pick "xla" by default and fail on machines without a plugin.
// The XLA backend is compiled in only with the build tag "xla" (see xla.go); without it, an
// "xla:…" spec returns an error that says so.
//
// SimpleGo traps in GoMLX v0.26.0 that this package works around (details in New):
//
//   - In its default mode SimpleGo executes independent ops of a graph concurrently on a worker
//     pool of 2×NumCPU goroutines, and DotGeneral (and a few other ops) split their own work on
//     the same pool with a blocking WaitToStart. When all pool slots are held by ops waiting
//     for their sub-tasks the execution deadlocks; gradient graphs, with many independent
//     matrix products, hit this. The safe default here is "go:ops_sequential" (ops run one after
//     another in the calling goroutine, while each op still parallelises internally).
//   - Setting "parallelism=N" makes SimpleGo print a line on stdout; this package swallows it.
package backend

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
)

// EnvVar is the environment variable consulted when New is given an empty spec
// (the same variable GoMLX itself uses).
const EnvVar = backends.ConfigEnvVar // "GOMLX_BACKEND"

// DefaultSimpleGo is the SimpleGo configuration used when neither the spec nor $GOMLX_BACKEND
// says otherwise. See the package documentation for why ops run sequentially.
const DefaultSimpleGo = "go:ops_sequential"

// xlaAvailable is set to true by xla.go when the binary is built with the "xla" tag.
var xlaAvailable bool

// New returns a backend for the given spec:
//
//   - "" : $GOMLX_BACKEND if set and non-empty, otherwise DefaultSimpleGo.
//   - "go", "simplego", "go:<options>", "simplego:<options>": the pure-Go SimpleGo backend.
//     A bare "go"/"simplego" gets the safe DefaultSimpleGo options; explicit options are
//     passed through unchanged (comma separated: parallelism=N (-1 unlimited, 0 inline),
//     ops_sequential, ops_parallel, dotgeneral_small, dotgeneral_large).
//     Passing ops_parallel (or nothing but parallelism=N with N>0) re-enables the
//     deadlock-prone concurrent op scheduler; only do that for forward-only graphs.
//   - "xla", "xla:cpu", "xla:cuda", "xla:/abs/path/plugin.so": XLA through a PJRT plugin.
//     Requires a binary built with -tags xla and PJRT_PLUGIN_LIBRARY_PATH (or an absolute
//     plugin path); otherwise a descriptive error is returned.
//
// New never panics: errors from GoMLX constructors (some of which panic) are returned.
func New(spec string) (b backends.Backend, err error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		spec = strings.TrimSpace(os.Getenv(EnvVar))
	}
	if spec == "" {
		spec = DefaultSimpleGo
	}
	name, config, _ := strings.Cut(spec, ":")
	defer func() {
		if r := recover(); r != nil {
			b = nil
			err = fmt.Errorf("backend %q: %v", spec, r)
		}
	}()
	switch strings.ToLower(name) {
	case "go", "simplego":
		if config == "" {
			_, config, _ = strings.Cut(DefaultSimpleGo, ":")
		}
		return newSimpleGo(config)
	case "xla", "stablehlo", "hlo", "shlo":
		return newXLA(spec, config)
	default:
		return nil, fmt.Errorf("unknown backend spec %q: want \"\" (default %s), \"go[:options]\", "+
			"\"simplego[:options]\" or \"xla:cpu\"/\"xla:cuda\"", spec, DefaultSimpleGo)
	}
}

// MustNew is New that panics on error, for tests and examples.
func MustNew(spec string) backends.Backend {
	b, err := New(spec)
	if err != nil {
		panic(err)
	}
	return b
}

var stdoutMu sync.Mutex

// newSimpleGo constructs SimpleGo. simplego.New prints "SimpleGo backend: parallelism set to N"
// on stdout when the parallelism option is given; stdout is redirected to /dev/null meanwhile so
// that command-line tools writing machine-readable stdout are not corrupted.
func newSimpleGo(config string) (backends.Backend, error) {
	if !strings.Contains(config, "parallelism") {
		b, err := simplego.New(config)
		if err != nil {
			return nil, fmt.Errorf("SimpleGo backend config %q: %w", config, err)
		}
		return b, nil
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	saved := os.Stdout
	if devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = devNull
		defer func() {
			os.Stdout = saved
			_ = devNull.Close()
		}()
	}
	b, err := simplego.New(config)
	if err != nil {
		return nil, fmt.Errorf("SimpleGo backend config %q: %w", config, err)
	}
	return b, nil
}

func newXLA(spec, config string) (backends.Backend, error) {
	if !xlaAvailable {
		return nil, fmt.Errorf("backend %q: this binary was built without XLA support "+
			"(rebuild with `-tags xla`, which needs cgo, and point PJRT_PLUGIN_LIBRARY_PATH at a PJRT plugin), "+
			"or use the pure-Go backend \"go\"", spec)
	}
	plugin, _, _ := strings.Cut(config, ",")
	if !strings.HasPrefix(plugin, "/") && os.Getenv("PJRT_PLUGIN_LIBRARY_PATH") == "" {
		return nil, fmt.Errorf("backend %q: no PJRT plugin configured: set PJRT_PLUGIN_LIBRARY_PATH to the "+
			"directory holding pjrt_c_api_%s_plugin.so (or give an absolute plugin path); "+
			"refusing to let GoMLX auto-download one", spec, orDefault(plugin, "cpu"))
	}
	return backends.NewWithConfig("xla:" + config)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Name returns a short human-readable description of b for reports, e.g. "SimpleGo (go)"
// or "xla:cpu". It returns "<nil>" for a nil backend.
func Name(b backends.Backend) string {
	if b == nil {
		return "<nil>"
	}
	if b.String() == "xla" {
		// The XLA backend's Name is "xla"; add the device description (e.g. "cpu").
		return fmt.Sprintf("xla (%s)", b.DeviceDescription(0))
	}
	return b.Name()
}
