package qm9

import (
	"math"
	"sync"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/enflow/enflow/internal/shared"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

const pretrained = "data/pretrained/en_flows_qm9"

var (
	testBackendOnce sync.Once
	testBackend     backends.Backend
	testMolsOnce    sync.Once
	testMols        []molecule.Molecule
	testMolsErr     error
)

func getBackend(t testing.TB) backends.Backend {
	testBackendOnce.Do(func() { testBackend = backend.MustNew("") })
	return testBackend
}

// publishedState loads the published flow and dequantizer state dicts.
func publishedState(t testing.TB) (flow, deq *torchimport.StateDict) {
	t.Helper()
	fp := shared.Require(t, pretrained, "flow.npy")
	dp := shared.Require(t, pretrained, "dequantizer.npy")
	flow, err := torchimport.LoadStateDict(fp)
	if err != nil {
		t.Fatal(err)
	}
	deq, err = torchimport.LoadStateDict(dp)
	if err != nil {
		t.Fatal(err)
	}
	return flow, deq
}

// publishedModel builds the published model with cfg (nil = DefaultConfig(dtype)).
func publishedModel(t testing.TB, dtype dtypes.DType, mod func(*Config)) *Model {
	t.Helper()
	flow, deq := publishedState(t)
	cfg := DefaultConfig(dtype)
	if mod != nil {
		mod(&cfg)
	}
	ctx := seededContext()
	if err := ImportTorch(ctx, cfg, flow, deq); err != nil {
		t.Fatal(err)
	}
	m, err := New(getBackend(t), ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testMolecules returns the extracted QM9 test split (npz order = sorted by gdb id).
func testMolecules(t testing.TB) []molecule.Molecule {
	t.Helper()
	p := shared.Require(t, "data/qm9/cormorant_qm9_test.npz")
	testMolsOnce.Do(func() { testMols, testMolsErr = qm9.ReadNPZ(p, "test") })
	if testMolsErr != nil {
		t.Fatal(testMolsErr)
	}
	return testMols
}

func moleculeByID(t testing.TB, id int64) molecule.Molecule {
	t.Helper()
	for _, m := range testMolecules(t) {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("molecule %d not in the test split", id)
	return molecule.Molecule{}
}

func closeTo(got, want, tol float64) bool { return math.Abs(got-want) <= tol }
