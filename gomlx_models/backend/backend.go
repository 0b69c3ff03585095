// Package backend selects the engine (GoMLX backend) used by enflow's models.
//
// New("") picks the engine at run time (see Resolve for the rule): XLA when the binary has it
// compiled in and a PJRT plugin is found (CUDA before CPU), the pure-Go SimpleGo backend ("go")
// otherwise. An explicit spec (--backend, or $GOMLX_BACKEND) always wins. New logs one line
// per distinct choice on slog's default logger ("engine: xla:cpu (plugin …)").
//
// SimpleGo is always linked, so every binary and test builds without cgo. The XLA backend is
// compiled in only with the build tag "xla" (see xla.go; it needs cgo); without it an "xla:…"
// spec returns an error that says so, and automatic selection reports SimpleGo with that note.
// Importing gomlx's backends/default instead would register XLA unconditionally, and
// backends.New() would then pick "xla" and try to download a plugin from GitHub.
//
// SimpleGo traps in GoMLX (found in v0.26.0, still present in v0.27.3) that this package works
// around (all verified):
//
//   - SimpleGo executes independent ops of a graph concurrently on a worker pool limited to
//     2×NumCPU goroutines, and DotGeneral (and a few other ops) split their own work on the same
//     pool with a blocking WaitToStart. When every slot is held by a DotGeneral waiting for its
//     sub-tasks the execution deadlocks (observed with v0.26.0 and v0.27.3: the DW4 training
//     iteration with "go:ops_parallel" or "go:parallelism=2" hangs forever, its goroutines in
//     workerspool.WaitToStart under execDotGeneralNormalized). Plain backends.New() /
//     simplego.GetBackend() use that bounded pool. The default here is "go:parallelism=-1": an
//     unbounded pool, where WaitToStart starts a goroutine instead of waiting, so nothing can
//     block; ops still run concurrently when a graph executes alone (sequentially when several
//     executions overlap). Measured on an idle 2-core machine (2026-11-23, GoMLX v0.27.3) it is
//     1.6× faster in wall time than "go:ops_sequential" for a DW4 training iteration
//     (1.34 s vs 2.13 s) at the same CPU time; ops_sequential (ops one after another, each
//     still parallel inside) and "go:parallelism=0" (everything inline) are deadlock-free too.
//   - The SimpleGo backend is registered as "go"; "simplego" is accepted here as an alias.
//   - Setting "parallelism=N" makes SimpleGo print a line on stdout; this package swallows it.
//
// XLA traps: go-xla reads $PJRT_PLUGIN_LIBRARY_PATH once, when the process starts, so a plugin
// found later (the project's .tools/pjrt) is passed by absolute path; GoMLX then no longer
// recognises a CPU plugin by name, so ",shared_buffers" (what "xla:cpu" implies) is added.
package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
)

// EnvVar is the environment variable consulted when New is given an empty spec
// (the same variable GoMLX itself uses).
const EnvVar = backends.ConfigEnvVar // "GOMLX_BACKEND"

// DefaultSimpleGo is the SimpleGo configuration used when neither the spec nor $GOMLX_BACKEND
// says otherwise. See the package documentation for why the worker pool is unbounded.
const DefaultSimpleGo = "go:parallelism=-1"

// xlaAvailable is set to true by xla.go when the binary is built with the "xla" tag.
var xlaAvailable bool

// New returns a backend for the given spec:
//
//   - "" : $GOMLX_BACKEND if set and non-empty, otherwise the automatic choice of Resolve
//     (XLA CUDA or CPU when compiled in and a plugin is found, else DefaultSimpleGo). If the
//     automatically chosen XLA plugin fails to load, New falls back to SimpleGo and says so.
//   - "go", "simplego", "go:<options>", "simplego:<options>": the pure-Go SimpleGo backend.
//     A bare "go"/"simplego" gets the safe DefaultSimpleGo options; explicit options are
//     passed through unchanged (comma separated: parallelism=N (-1 unbounded, 0 inline),
//     ops_sequential, ops_parallel, dotgeneral_normalized, dotgeneral_blocked,
//     dotgeneral_smallmatmul, packgemm). Options without parallelism=-1 or 0 and without
//     ops_sequential use the bounded pool, which can deadlock on gradient graphs.
//   - "xla", "xla:cpu", "xla:cuda", "xla:/abs/path/plugin.so": XLA through a PJRT plugin.
//     Requires a binary built with -tags xla; the plugin is looked up as Resolve describes
//     (or, when not found there, in go-xla's own directories). GoMLX's automatic plugin
//     download is disabled. Otherwise a descriptive error is returned.
//
// New never panics: errors from GoMLX constructors (some of which panic) are returned.
func New(spec string) (backends.Backend, error) {
	c, err := Resolve(spec)
	if err != nil {
		return nil, err
	}
	b, err := construct(c.Spec)
	if err != nil && c.Auto && c.Spec != DefaultSimpleGo {
		failed := c
		c = Choice{Spec: DefaultSimpleGo, Engine: EngineSimpleGo, Auto: true,
			Reason: fmt.Sprintf("%s failed to start (%v)", failed.Engine, err)}
		b, err = construct(c.Spec)
	}
	if err != nil {
		return nil, err
	}
	logChoice(c)
	return b, nil
}

// construct builds the backend of a resolved spec.
func construct(spec string) (b backends.Backend, err error) {
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
		return nil, fmt.Errorf("unknown backend spec %q: want \"\" (automatic), \"go[:options]\", "+
			"\"simplego[:options]\" or \"xla:cpu\"/\"xla:cuda\"", spec)
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
			"(./just setup-go builds it with XLA when cgo and a C compiler are available; by hand: "+
			"CGO_ENABLED=1 go build -tags xla), or use the pure-Go backend \"go\"", spec)
	}
	b, err := backends.NewWithConfig("xla:" + config)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w (PJRT_PLUGIN_LIBRARY_PATH=%q; scripts/xla/setup.sh installs a CPU plugin "+
			"into .tools/pjrt)", spec, err, os.Getenv("PJRT_PLUGIN_LIBRARY_PATH"))
	}
	return b, nil
}

// Compiles reports whether b compiles one program per graph shape (XLA, on any device), so that
// callers can trade padding for fewer shapes. SimpleGo interprets graphs: false.
func Compiles(b backends.Backend) bool {
	return b != nil && b.String() == "xla"
}

// Name returns the engine name of b for logs and summaries: EngineSimpleGo ("go (SimpleGo)")
// or "xla:<plugin>" (e.g. "xla:cpu", also for a plugin loaded by path). It returns "<nil>" for
// a nil backend.
func Name(b backends.Backend) string {
	if b == nil {
		return "<nil>"
	}
	if b.String() == "xla" {
		// The XLA backend's Name is just "xla"; its Description starts with "xla:<plugin> - ",
		// where <plugin> is a name ("cpu") or the absolute path New passed.
		d, _, _ := strings.Cut(b.Description(), " ")
		if p, ok := strings.CutPrefix(d, "xla:"); ok && filepath.IsAbs(p) {
			if name := pluginNameOf(p); name != "" {
				return "xla:" + name
			}
		}
		return d
	}
	if b.String() == simplego.BackendName {
		return EngineSimpleGo
	}
	return b.Name()
}
