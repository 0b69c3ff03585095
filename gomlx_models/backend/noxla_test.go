//go:build !xla

package backend

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends/simplego"
)

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

// TestNewWithoutXLAReportsSimpleGo: a binary built without the xla tag picks SimpleGo even when
// a plugin is there, and says why.
func TestNewWithoutXLAReportsSimpleGo(t *testing.T) {
	dir := t.TempDir()
	fakePlugin(t, dir, "cpu")
	t.Setenv(EnvVar, "")
	t.Setenv(PluginPathEnvVar, dir)
	buf := captureLog(t)
	b, err := New("")
	if err != nil {
		t.Fatalf("New(\"\"): %v", err)
	}
	defer b.Finalize()
	if _, ok := b.(*simplego.Backend); !ok {
		t.Fatalf("New(\"\") = %T (%s), want *simplego.Backend", b, Name(b))
	}
	if got := Name(b); !strings.Contains(got, "SimpleGo") {
		t.Errorf("Name = %q, want it to mention SimpleGo", got)
	}
	if Compiles(b) {
		t.Error("Compiles(SimpleGo) = true")
	}
	log := buf.String()
	if want := "engine: go (SimpleGo): built without cgo/xla"; !strings.Contains(log, want) || strings.Count(log, "engine:") != 1 {
		t.Errorf("log = %q, want exactly one line containing %q", log, want)
	}
	// The same choice again is not logged twice.
	b2, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	b2.Finalize()
	if n := strings.Count(buf.String(), "engine:"); n != 1 {
		t.Errorf("%d engine lines after two New calls, want 1", n)
	}
}
