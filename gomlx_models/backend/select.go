package backend

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Engine names reported by Resolve (and recorded in summaries).
const (
	EngineSimpleGo = "go (SimpleGo)"
	EngineXLACPU   = "xla:cpu"
	EngineXLACUDA  = "xla:cuda"
)

// PluginPathEnvVar is go-xla's list of directories searched for PJRT plugins.
const PluginPathEnvVar = "PJRT_PLUGIN_LIBRARY_PATH"

// NoAutoInstallEnvVar stops GoMLX from downloading PJRT plugins from GitHub.
const NoAutoInstallEnvVar = "GOMLX_NO_AUTO_INSTALL"

// ProjectPluginDir is where scripts/xla/setup.sh installs the XLA CPU plugin, relative to the
// checkout (bin/enflow looks for it at bin/../.tools/pjrt and in the working directory).
const ProjectPluginDir = ".tools/pjrt"

// Choice is the engine picked for a spec, and why.
type Choice struct {
	// Spec is what the backend is constructed from: "go:parallelism=-1", "xla:cuda",
	// "xla:/abs/dir/pjrt_c_api_cpu_plugin.so,shared_buffers", …
	Spec string
	// Engine is the short name: EngineSimpleGo, EngineXLACPU, EngineXLACUDA, or "xla:<name>"
	// for other plugins.
	Engine string
	// Plugin is the PJRT plugin file, when one was located.
	Plugin string
	// Reason says why this engine (a plugin path, a requested spec, a missing plugin, …).
	Reason string
	// Auto is true when no spec was requested: New may then fall back to SimpleGo.
	Auto bool
}

// String is the line New logs: "engine: xla:cpu (plugin .tools/pjrt/…)" or
// "engine: go (SimpleGo): no XLA plugin found; run ./just setup".
func (c Choice) String() string {
	if c.Engine == EngineSimpleGo {
		return "engine: " + c.Engine + ": " + c.Reason
	}
	return "engine: " + c.Engine + " (" + c.Reason + ")"
}

// environment is everything the selection rule looks at, so that tests can fake it.
type environment struct {
	xla         bool     // XLA compiled in (build tag xla)
	envSpec     string   // $GOMLX_BACKEND
	pluginPath  string   // $PJRT_PLUGIN_LIBRARY_PATH (":"-separated directories)
	exeDir      string   // directory of the running executable ("" if unknown)
	workDir     string   // working directory ("" if unknown)
	defaultDirs []string // go-xla's standard plugin directories
	gpu         bool     // an NVIDIA device node exists (/dev/nvidia*)
}

// processEnvironment reads the environment of this process.
func processEnvironment() environment {
	e := environment{
		xla:        xlaAvailable,
		envSpec:    strings.TrimSpace(os.Getenv(EnvVar)),
		pluginPath: os.Getenv(PluginPathEnvVar),
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		e.exeDir = filepath.Dir(exe)
	}
	if wd, err := os.Getwd(); err == nil {
		e.workDir = wd
	}
	if home, err := os.UserHomeDir(); err == nil {
		e.defaultDirs = append(e.defaultDirs, filepath.Join(home, ".local", "lib", "go-xla"),
			filepath.Join(home, ".local", "lib", "go-xla", "nvidia"))
	}
	e.defaultDirs = append(e.defaultDirs, "/usr/local/lib/go-xla", "/usr/local/lib/go-xla/nvidia")
	if m, _ := filepath.Glob("/dev/nvidia[0-9]*"); len(m) > 0 {
		e.gpu = true
	}
	return e
}

// Resolve returns the engine New(spec) uses, without constructing it. The rule:
//
//  1. An explicit spec wins: spec (the --backend flag), else $GOMLX_BACKEND. "go…" is SimpleGo;
//     "xla:cpu"/"xla:cuda"/"xla" use the plugin found as below (or, if none is found there,
//     whatever go-xla finds itself); it fails later, in New, when XLA is not compiled in.
//  2. Otherwise, in a binary built without the xla tag: SimpleGo (DefaultSimpleGo).
//  3. Otherwise XLA CUDA, when a CUDA plugin (pjrt_c_api_cuda_plugin.so) is found and an NVIDIA
//     device exists (/dev/nvidia0, …).
//  4. Otherwise XLA CPU, when a CPU plugin (pjrt_c_api_cpu_plugin.so) is found.
//  5. Otherwise SimpleGo.
//
// Plugins are searched in this order: the directories of $PJRT_PLUGIN_LIBRARY_PATH, the
// project's .tools/pjrt next to the executable (bin/../.tools/pjrt) and in the working
// directory, then go-xla's standard directories (~/.local/lib/go-xla[/nvidia],
// /usr/local/lib/go-xla[/nvidia], where go-xla's installer puts them).
func Resolve(spec string) (Choice, error) {
	return resolve(spec, processEnvironment())
}

func resolve(spec string, e environment) (Choice, error) {
	spec = strings.TrimSpace(spec)
	source := "requested with --backend"
	if spec == "" && e.envSpec != "" {
		spec, source = e.envSpec, EnvVar+"="+e.envSpec
	}
	if spec != "" {
		return resolveExplicit(spec, source, e)
	}
	if !e.xla {
		return Choice{Spec: DefaultSimpleGo, Engine: EngineSimpleGo, Auto: true,
			Reason: "built without cgo/xla (./just setup-go builds XLA in when cgo and a C compiler work)"}, nil
	}
	dirs := pluginDirs(e)
	if p := findPlugin(dirs, "cuda"); p != "" && e.gpu {
		return xlaChoice("cuda", p, "", "plugin "+displayPath(p, e.workDir), true), nil
	}
	if p := findPlugin(dirs, "cpu"); p != "" {
		return xlaChoice("cpu", p, "", "plugin "+displayPath(p, e.workDir), true), nil
	}
	return Choice{Spec: DefaultSimpleGo, Engine: EngineSimpleGo, Auto: true,
		Reason: "no XLA plugin found; run ./just setup"}, nil
}

func resolveExplicit(spec, source string, e environment) (Choice, error) {
	name, config, _ := strings.Cut(spec, ":")
	switch strings.ToLower(name) {
	case "go", "simplego":
		if config == "" {
			spec = DefaultSimpleGo
		}
		return Choice{Spec: spec, Engine: EngineSimpleGo, Reason: source}, nil
	case "xla", "stablehlo", "hlo", "shlo":
	default:
		return Choice{}, fmt.Errorf("unknown backend spec %q: want \"\" (automatic), \"go[:options]\", "+
			"\"simplego[:options]\" or \"xla:cpu\"/\"xla:cuda\"", spec)
	}
	plugin, options, _ := strings.Cut(config, ",")
	switch {
	case filepath.IsAbs(plugin):
		engine := "xla:" + pluginNameOf(plugin)
		if engine == "xla:" {
			engine = "xla:" + plugin
		}
		return Choice{Spec: "xla:" + config, Engine: engine, Plugin: plugin, Reason: source}, nil
	case !e.xla:
		// New reports that XLA is not compiled in.
		return Choice{Spec: spec, Engine: "xla:" + plugin, Reason: source}, nil
	}
	dirs := pluginDirs(e)
	candidates := []string{plugin}
	if plugin == "" {
		candidates = []string{"cuda", "cpu"} // GoMLX's preference order for a bare "xla"
	}
	for _, c := range candidates {
		if p := findPlugin(dirs, c); p != "" {
			return xlaChoice(c, p, options, source+", plugin "+displayPath(p, e.workDir), false), nil
		}
	}
	// Not in our directories: let go-xla search its own (it may still find it, or fail).
	engine := "xla:" + plugin
	if plugin == "" {
		engine = "xla"
	}
	return Choice{Spec: spec, Engine: engine, Reason: source}, nil
}

// xlaChoice builds the choice for a located plugin file of the given name.
func xlaChoice(name, path, options string, reason string, auto bool) Choice {
	cfg := path
	if name == "cpu" && !strings.Contains(options, "shared_buffers") {
		options = strings.Trim("shared_buffers,"+options, ",")
	}
	if options != "" {
		cfg += "," + options
	}
	return Choice{Spec: "xla:" + cfg, Engine: "xla:" + name, Plugin: path, Reason: reason, Auto: auto}
}

// pluginDirs lists the plugin search directories of e in order, without duplicates.
func pluginDirs(e environment) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" {
			return
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range strings.Split(e.pluginPath, ":") {
		add(d)
	}
	if e.exeDir != "" {
		add(filepath.Join(e.exeDir, "..", ProjectPluginDir))
	}
	if e.workDir != "" {
		add(filepath.Join(e.workDir, ProjectPluginDir))
	}
	for _, d := range e.defaultDirs {
		add(d)
	}
	return dirs
}

// findPlugin returns the absolute path of the first non-empty plugin file for name ("cpu",
// "cuda") in dirs, under go-xla's file names, or "".
func findPlugin(dirs []string, name string) string {
	for _, d := range dirs {
		for _, f := range []string{"pjrt_c_api_" + name + "_plugin.so", "pjrt_plugin_" + name + ".so", "pjrt-plugin-" + name + ".so"} {
			p := filepath.Join(d, f)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
				if abs, err := filepath.Abs(p); err == nil {
					return abs
				}
				return p
			}
		}
	}
	return ""
}

var rePluginFile = regexp.MustCompile(`(?:^|/)(?:pjrt_c_api_(.+)_plugin|pjrt[-_]plugin[-_](.+))\.(?:so|dylib|dll)$`)

// pluginNameOf returns the plugin name of a plugin file path ("cpu" for
// …/pjrt_c_api_cpu_plugin.so), or "".
func pluginNameOf(path string) string {
	m := rePluginFile.FindStringSubmatch(path)
	if m == nil {
		return ""
	}
	if m[1] != "" {
		return m[1]
	}
	return m[2]
}

// displayPath shows p relative to the working directory when it is inside it.
func displayPath(p, workDir string) string {
	if workDir != "" {
		if rel, err := filepath.Rel(workDir, p); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return p
}

var logged sync.Map // Choice.String() → struct{}

// logChoice logs c once per process (bench and tests create many backends).
func logChoice(c Choice) {
	line := c.String()
	if _, dup := logged.LoadOrStore(line, struct{}{}); dup {
		return
	}
	slog.Info(line)
}
