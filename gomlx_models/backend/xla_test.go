//go:build xla

package backend

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

// TestXLACPU runs a tiny graph on XLA when a PJRT plugin is configured
// (PJRT_PLUGIN_LIBRARY_PATH; see scripts/xla/setup.sh).
func TestXLACPU(t *testing.T) {
	if os.Getenv(PluginPathEnvVar) == "" {
		t.Skip("PJRT_PLUGIN_LIBRARY_PATH not set")
	}
	b, err := New("xla:cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	if got := Name(b); got != EngineXLACPU {
		t.Errorf("Name = %q, want %q", got, EngineXLACPU)
	}
	if !Compiles(b) {
		t.Error("Compiles(xla) = false")
	}
	got := graph.MustExecOnce(b, func(x *graph.Node) *graph.Node { return graph.MulScalar(x, 2) }, []float64{1, 2})
	if v := got.Value().([]float64); v[0] != 2 || v[1] != 4 {
		t.Fatalf("got %v", v)
	}
}

// captureLog redirects slog's default logger to a buffer for the test and forgets which engine
// lines were already logged.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	saved := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	logged.Clear()
	t.Cleanup(func() {
		slog.SetDefault(saved)
		logged.Clear()
	})
	return &buf
}

// TestNewAutoPicksXLA: with XLA compiled in and the plugin found, the automatic choice is
// xla:cpu, loaded by absolute path, and logged.
func TestNewAutoPicksXLA(t *testing.T) {
	if os.Getenv(PluginPathEnvVar) == "" {
		t.Skip("PJRT_PLUGIN_LIBRARY_PATH not set")
	}
	t.Setenv(EnvVar, "")
	buf := captureLog(t)
	b, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	if got := Name(b); got != EngineXLACPU {
		t.Errorf("Name = %q, want %q", got, EngineXLACPU)
	}
	if log := buf.String(); !strings.Contains(log, "engine: xla:cpu (plugin ") {
		t.Errorf("log = %q, want the xla:cpu engine line", log)
	}
}

// TestNewAutoFallsBackToSimpleGo: a plugin file that does not load makes the automatic choice
// fall back to SimpleGo with a note, while an explicit request for it is an error.
func TestNewAutoFallsBackToSimpleGo(t *testing.T) {
	dir := t.TempDir()
	fakePlugin(t, dir, "cpu")
	t.Setenv(EnvVar, "")
	t.Setenv(PluginPathEnvVar, dir)
	t.Chdir(dir) // no .tools/pjrt in the working directory
	c, err := Resolve("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Engine != EngineXLACPU || !strings.HasPrefix(c.Plugin, dir) {
		t.Skipf("another plugin is found first (%s)", c)
	}
	buf := captureLog(t)
	b, err := New("")
	if err != nil {
		t.Fatalf("New(\"\") with a broken plugin: %v", err)
	}
	defer b.Finalize()
	if Compiles(b) {
		t.Fatalf("New(\"\") = %s, want SimpleGo", Name(b))
	}
	if log := buf.String(); !strings.Contains(log, "engine: go (SimpleGo): xla:cpu failed to start") {
		t.Errorf("log = %q, want the fallback note", log)
	}
	if b, err := New("xla:cpu"); err == nil {
		b.Finalize()
		t.Error("New(\"xla:cpu\") with a broken plugin succeeded")
	}
}
