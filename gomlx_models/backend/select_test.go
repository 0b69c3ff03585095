package backend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakePlugin writes a non-empty file standing in for a PJRT plugin and returns its path.
func fakePlugin(t *testing.T, dir, name string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "pjrt_c_api_"+name+"_plugin.so")
	if err := os.WriteFile(p, []byte("not really a plugin"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolveRule(t *testing.T) {
	type layout struct {
		root, envDir, wd, home string
	}
	for _, tc := range []struct {
		name  string
		spec  string
		setup func(t *testing.T, l layout, e *environment) // plugins and environment
		// want
		engine, specPrefix, plugin, reason string
		auto                               bool
		wantErr                            string
	}{
		{name: "no xla compiled, plugin present", setup: func(t *testing.T, l layout, e *environment) {
			e.xla = false
			fakePlugin(t, l.envDir, "cpu")
			e.pluginPath = l.envDir
		}, engine: EngineSimpleGo, specPrefix: DefaultSimpleGo, reason: "built without cgo/xla", auto: true},
		{name: "xla compiled, no plugin anywhere", setup: func(t *testing.T, l layout, e *environment) {},
			engine: EngineSimpleGo, specPrefix: DefaultSimpleGo, reason: "no XLA plugin found; run ./just setup", auto: true},
		{name: "cpu plugin in PJRT_PLUGIN_LIBRARY_PATH", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			e.pluginPath = l.envDir
		}, engine: EngineXLACPU, specPrefix: "xla:/", plugin: "envdir/pjrt_c_api_cpu_plugin.so", reason: "plugin ", auto: true},
		{name: "second directory of the path list", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			e.pluginPath = filepath.Join(l.root, "empty") + "::" + l.envDir
		}, engine: EngineXLACPU, plugin: "envdir/pjrt_c_api_cpu_plugin.so", auto: true},
		{name: "project plugin next to the executable", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, filepath.Join(l.root, "checkout", ".tools", "pjrt"), "cpu")
			e.exeDir = filepath.Join(l.root, "checkout", "bin")
		}, engine: EngineXLACPU, plugin: "checkout/.tools/pjrt/pjrt_c_api_cpu_plugin.so", auto: true},
		{name: "project plugin in the working directory, shown relative", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, filepath.Join(l.wd, ".tools", "pjrt"), "cpu")
		}, engine: EngineXLACPU, plugin: "wd/.tools/pjrt/pjrt_c_api_cpu_plugin.so",
			reason: "plugin .tools/pjrt/pjrt_c_api_cpu_plugin.so", auto: true},
		{name: "empty plugin file is ignored", setup: func(t *testing.T, l layout, e *environment) {
			p := fakePlugin(t, l.envDir, "cpu")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			e.pluginPath = l.envDir
		}, engine: EngineSimpleGo, reason: "no XLA plugin found", auto: true},
		{name: "cuda and cpu plugins with a GPU: cuda", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			fakePlugin(t, l.envDir, "cuda")
			e.pluginPath, e.gpu = l.envDir, true
		}, engine: EngineXLACUDA, specPrefix: "xla:/", plugin: "envdir/pjrt_c_api_cuda_plugin.so", auto: true},
		{name: "cuda plugin without a GPU: cpu", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			fakePlugin(t, l.envDir, "cuda")
			e.pluginPath = l.envDir
		}, engine: EngineXLACPU, plugin: "envdir/pjrt_c_api_cpu_plugin.so", auto: true},
		{name: "only a cuda plugin, no GPU: SimpleGo", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cuda")
			e.pluginPath = l.envDir
		}, engine: EngineSimpleGo, reason: "no XLA plugin found", auto: true},
		{name: "cuda from go-xla's installer directory", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, filepath.Join(l.home, ".local", "lib", "go-xla", "nvidia"), "cuda")
			e.gpu = true
		}, engine: EngineXLACUDA, plugin: "home/.local/lib/go-xla/nvidia/pjrt_c_api_cuda_plugin.so", auto: true},
		{name: "explicit go wins over a plugin", spec: "go", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			e.pluginPath = l.envDir
		}, engine: EngineSimpleGo, specPrefix: DefaultSimpleGo, reason: "--backend"},
		{name: "GOMLX_BACKEND wins over a plugin", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			e.pluginPath, e.envSpec = l.envDir, "go:parallelism=0"
		}, engine: EngineSimpleGo, specPrefix: "go:parallelism=0", reason: "GOMLX_BACKEND=go:parallelism=0"},
		{name: "--backend wins over GOMLX_BACKEND", spec: "go:ops_sequential", setup: func(t *testing.T, l layout, e *environment) {
			e.envSpec = "xla:cpu"
		}, engine: EngineSimpleGo, specPrefix: "go:ops_sequential", reason: "--backend"},
		{name: "explicit xla:cpu uses the project plugin", spec: "xla:cpu", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, filepath.Join(l.wd, ".tools", "pjrt"), "cpu")
		}, engine: EngineXLACPU, specPrefix: "xla:/", plugin: "wd/.tools/pjrt/pjrt_c_api_cpu_plugin.so", reason: "--backend, plugin .tools/pjrt"},
		{name: "explicit bare xla prefers cuda", spec: "xla", setup: func(t *testing.T, l layout, e *environment) {
			fakePlugin(t, l.envDir, "cpu")
			fakePlugin(t, l.envDir, "cuda")
			e.pluginPath = l.envDir
		}, engine: EngineXLACUDA, plugin: "envdir/pjrt_c_api_cuda_plugin.so"},
		{name: "explicit xla:cpu without a plugin goes to go-xla", spec: "xla:cpu", setup: func(t *testing.T, l layout, e *environment) {},
			engine: EngineXLACPU, specPrefix: "xla:cpu"},
		{name: "explicit xla:cpu without xla compiled", spec: "xla:cpu", setup: func(t *testing.T, l layout, e *environment) {
			e.xla = false
			fakePlugin(t, l.envDir, "cpu")
			e.pluginPath = l.envDir
		}, engine: EngineXLACPU, specPrefix: "xla:cpu"},
		{name: "unknown spec", spec: "bogus", setup: func(t *testing.T, l layout, e *environment) {}, wantErr: "unknown backend spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			l := layout{root: root, envDir: filepath.Join(root, "envdir"), wd: filepath.Join(root, "wd"), home: filepath.Join(root, "home")}
			if err := os.MkdirAll(l.wd, 0o755); err != nil {
				t.Fatal(err)
			}
			e := environment{xla: true, workDir: l.wd, defaultDirs: []string{
				filepath.Join(l.home, ".local", "lib", "go-xla"), filepath.Join(l.home, ".local", "lib", "go-xla", "nvidia")}}
			tc.setup(t, l, &e)
			c, err := resolve(tc.spec, e)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("resolve(%q) = %+v, %v; want error containing %q", tc.spec, c, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%q): %v", tc.spec, err)
			}
			if c.Engine != tc.engine {
				t.Errorf("engine = %q, want %q (%s)", c.Engine, tc.engine, c)
			}
			if !strings.HasPrefix(c.Spec, tc.specPrefix) {
				t.Errorf("spec = %q, want prefix %q", c.Spec, tc.specPrefix)
			}
			if tc.plugin == "" && c.Plugin != "" && c.Auto {
				t.Errorf("plugin = %q, want none", c.Plugin)
			}
			if tc.plugin != "" {
				if want := filepath.Join(root, tc.plugin); c.Plugin != want {
					t.Errorf("plugin = %q, want %q", c.Plugin, want)
				}
				if !strings.HasPrefix(c.Spec, "xla:"+c.Plugin) {
					t.Errorf("spec %q does not load plugin %q by absolute path", c.Spec, c.Plugin)
				}
				if strings.HasSuffix(c.Plugin, "cpu_plugin.so") && !strings.HasSuffix(c.Spec, ",shared_buffers") {
					t.Errorf("spec %q: a CPU plugin by path needs shared_buffers (as xla:cpu)", c.Spec)
				}
			}
			if !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("reason = %q, want it to contain %q", c.Reason, tc.reason)
			}
			if c.Auto != tc.auto {
				t.Errorf("auto = %v, want %v", c.Auto, tc.auto)
			}
			if line := c.String(); !strings.HasPrefix(line, "engine: "+c.Engine) {
				t.Errorf("line %q does not start with the engine", line)
			}
		})
	}
}

func TestChoiceString(t *testing.T) {
	for _, tc := range []struct {
		c    Choice
		want string
	}{
		{Choice{Engine: EngineXLACPU, Reason: "plugin .tools/pjrt/pjrt_c_api_cpu_plugin.so"},
			"engine: xla:cpu (plugin .tools/pjrt/pjrt_c_api_cpu_plugin.so)"},
		{Choice{Engine: EngineSimpleGo, Reason: "no XLA plugin found; run ./just setup"},
			"engine: go (SimpleGo): no XLA plugin found; run ./just setup"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestPluginNameOf(t *testing.T) {
	for path, want := range map[string]string{
		"/a/pjrt_c_api_cpu_plugin.so":  "cpu",
		"/a/pjrt_c_api_cuda_plugin.so": "cuda",
		"/a/pjrt-plugin-tpu.so":        "tpu",
		"/a/libfoo.so":                 "",
	} {
		if got := pluginNameOf(path); got != want {
			t.Errorf("pluginNameOf(%q) = %q, want %q", path, got, want)
		}
	}
}
