//go:build xla

package backend

import (
	"os"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

// TestXLACPU runs a tiny graph on XLA when a PJRT plugin is configured
// (PJRT_PLUGIN_LIBRARY_PATH; see scripts/xla/setup.sh).
func TestXLACPU(t *testing.T) {
	if os.Getenv("PJRT_PLUGIN_LIBRARY_PATH") == "" {
		t.Skip("PJRT_PLUGIN_LIBRARY_PATH not set")
	}
	b, err := New("xla:cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	t.Logf("backend: %s", Name(b))
	got := graph.MustExecOnce(b, func(x *graph.Node) *graph.Node { return graph.MulScalar(x, 2) }, []float64{1, 2})
	if v := got.Value().([]float64); v[0] != 2 || v[1] != 4 {
		t.Fatalf("got %v", v)
	}
}
