package qm9

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// TestReferenceIntermediates checks the port against REFERENCE §4.7: the official PyTorch
// modules with the published checkpoint, in float64, on row 0 of the test npz (gdb 11, 7 atoms,
// charges [6 6 8 1 1 1 1]), all masks one, ε = 0.
func TestReferenceIntermediates(t *testing.T) {
	m := publishedModel(t, dtypes.Float64, nil)
	mols := testMolecules(t)
	mol := mols[0]
	if mol.ID != 11 || mol.NAtoms() != 7 {
		t.Fatalf("row 0 is gdb %d with %d atoms, want gdb 11 with 7", mol.ID, mol.NAtoms())
	}
	b, err := NewBatch(mols[:1])
	if err != nil {
		t.Fatal(err)
	}
	inter, err := m.Encode(b, EvalOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer freeAll([]*tensors.Tensor{inter.Y})
	const tol = 1e-5
	check := func(name string, got, want []float64) {
		t.Helper()
		for i := range want {
			if !closeTo(got[i], want[i], tol) {
				t.Errorf("%s[%d] = %.6f, want %.6f", name, i, got[i], want[i])
			}
		}
	}
	check("mu(atom 0)", inter.Mu[:6], []float64{-8.187835, 3.269923, 2.733653, 0.745649, 1.496307, -0.163124})
	check("log_sigma(atom 0)", inter.LogSigma[:6], []float64{-0.398100, -1.343720, -0.647175, -1.248945, 0.033923, -0.389107})
	check("log q(v|x,h)", inter.LogQ, []float64{6.726637})
	check("ActNorm log-det", inter.ActNorm, []float64{-44.901790})

	// Dynamics f(t = 0.5, y) of the flow.
	dyn := m.Dynamics()
	exec, err := context.NewExec(getBackend(t), m.Context(), func(ctx *context.Context, y, mask *Node) *Node {
		return dyn(ctx.In(ScopeFlow), Scalar(y.Graph(), y.DType(), 0.5), y, mask)
	})
	if err != nil {
		t.Fatal(err)
	}
	mask := tensors.FromFlatDataAndDimensions(b.Mask, 1, b.N)
	out, err := exec.Exec(inter.Y, mask)
	if err != nil {
		t.Fatal(err)
	}
	f := tensors.MustCopyFlatData[float64](out[0])
	check("f(0.5)(atom 0)", f[:9], []float64{0.000904, 0.325902, 0.006498, -0.097778, -1.308246, -1.187677, -0.518751, -0.504550, 0.026301})
	norm := 0.0
	for _, v := range f {
		norm += v * v
	}
	check("‖f‖", []float64{math.Sqrt(norm)}, []float64{4.856147})
}
