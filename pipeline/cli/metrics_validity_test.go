package cli

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/internal/shared"
)

// requireVenv returns the venv interpreter, skipping the test when it is missing unless CI
// is set (CI installs it with ./just setup-py, so there it must exist).
func requireVenv(t *testing.T) string {
	t.Helper()
	py, looked := findVenvPython()
	if py != "" {
		return py
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but the Python venv with RDKit is missing (looked in %v): run ./just setup-py", looked)
	}
	t.Skip("Python venv .tools/venv with RDKit not found; run ./just setup-py to enable the validity tests")
	return ""
}

func synthetic(id int64, z []int, pos [][3]float64) molecule.Molecule {
	m := molecule.Molecule{ID: id, Z: z, Positions: pos, Omega1: math.NaN()}
	for i := range m.Props {
		m.Props[i] = math.NaN()
	}
	return m
}

// bipyramid returns a centre atom zc with five hydrogens at distance d (trigonal bipyramid).
func bipyramid(id int64, zc int, d float64) molecule.Molecule {
	pos := [][3]float64{{0, 0, 0}, {0, 0, d}, {0, 0, -d}}
	for k := range 3 {
		a := 2 * math.Pi * float64(k) / 3
		pos = append(pos, [3]float64{d * math.Cos(a), d * math.Sin(a), 0})
	}
	return synthetic(id, []int{zc, 1, 1, 1, 1, 1}, pos)
}

type validityOut struct {
	NMolecules   int      `json:"n_molecules"`
	NValid       int      `json:"n_valid"`
	Validity     float64  `json:"validity"`
	NUnique      int      `json:"n_unique"`
	Uniqueness   float64  `json:"uniqueness"`
	NTrain       int      `json:"n_train"`
	NTrainSMILES int      `json:"n_train_smiles"`
	NNovel       *int     `json:"n_novel"`
	Novelty      *float64 `json:"novelty"`
	InvalidIDs   []int64  `json:"invalid_ids"`
	Molecules    []struct {
		ID     int64   `json:"id"`
		SMILES *string `json:"smiles"`
	} `json:"molecules"`
}

func runValidityJSON(t *testing.T, args ...string) validityOut {
	t.Helper()
	code, out, errs := runCLIForMetrics(t, append([]string{"metrics", "validity", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("metrics validity %v: exit %d: %s", args, code, errs)
	}
	var v validityOut
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return v
}

// TestMetricsValidityKnownMolecules: real QM9 test molecules (acetaldehyde 11, ethanol 14,
// the aromatic furazan 175, and 115, which RDKit rejects), a carbon with five hydrogens, a
// pentavalent nitrogen, a translated copy of ethanol and ethanol with a distant water (its
// largest fragment is ethanol): exact counts for validity, uniqueness and novelty.
func TestMetricsValidityKnownMolecules(t *testing.T) {
	requireVenv(t)
	npz := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	all, err := qm9.ReadNPZ(npz, "test")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]molecule.Molecule{}
	for _, m := range all {
		byID[m.ID] = m
	}
	var mols []molecule.Molecule
	for _, id := range []int64{11, 14, 175, 115} {
		m, ok := byID[id]
		if !ok {
			t.Fatalf("gdb %d not in the test split", id)
		}
		mols = append(mols, m)
	}
	eth := byID[14]
	shifted := synthetic(900003, eth.Z, nil)
	withWater := synthetic(900004, append([]int{8, 1, 1}, eth.Z...), [][3]float64{{20, 0, 0}, {20.96, 0, 0}, {19.76, 0.93, 0}})
	for _, p := range eth.Positions {
		shifted.Positions = append(shifted.Positions, [3]float64{p[0] + 3, p[1] - 1, p[2] + 0.5})
		withWater.Positions = append(withWater.Positions, p)
	}
	mols = append(mols, bipyramid(900001, 6, 1.09), bipyramid(900002, 7, 1.01), shifted, withWater)

	dir := t.TempDir()
	in := filepath.Join(dir, "mols.parquet")
	writeMoleculeTableForMetrics(t, in, mols)
	train := filepath.Join(dir, "train.arrow")
	writeMoleculeTableForMetrics(t, train, []molecule.Molecule{byID[14], byID[115]})

	v := runValidityJSON(t, "--in", in, "--train", train, "--smiles")
	if v.NMolecules != 8 || v.NValid != 5 || v.NUnique != 3 {
		t.Errorf("molecules %d valid %d unique %d, want 8, 5, 3", v.NMolecules, v.NValid, v.NUnique)
	}
	if v.Validity != 5.0/8 || v.Uniqueness != 3.0/5 {
		t.Errorf("validity %v uniqueness %v, want 0.625 and 0.6", v.Validity, v.Uniqueness)
	}
	if !slices.Equal(v.InvalidIDs, []int64{115, 900001, 900002}) {
		t.Errorf("invalid ids %v, want [115 900001 900002]", v.InvalidIDs)
	}
	if v.NTrain != 2 || v.NTrainSMILES != 1 || v.NNovel == nil || *v.NNovel != 2 || *v.Novelty != 2.0/3 {
		t.Errorf("train %d, train SMILES %d, novel %v (%v); want 2, 1, 2 (2/3)", v.NTrain, v.NTrainSMILES, v.NNovel, v.Novelty)
	}
	if len(v.Molecules) != 8 {
		t.Fatalf("%d per-molecule entries", len(v.Molecules))
	}
	s := func(i int) string {
		if v.Molecules[i].SMILES == nil {
			return "(invalid)"
		}
		return *v.Molecules[i].SMILES
	}
	if s(1) != s(6) || s(1) != s(7) || s(0) == s(1) || !strings.Contains(s(2), "c1") {
		t.Errorf("SMILES %q %q %q … %q %q: want ethanol thrice, acetaldehyde distinct, an aromatic furazan", s(0), s(1), s(2), s(6), s(7))
	}

	// Without --train: no novelty.
	v = runValidityJSON(t, "--in", in)
	if v.NNovel != nil || v.Novelty != nil || v.NValid != 5 {
		t.Errorf("without --train: novel %v novelty %v valid %d", v.NNovel, v.Novelty, v.NValid)
	}
}

// TestMetricsValidityQM9TestSplit: the real test split, measured with the pinned RDKit
// 2026.9.1 (EDM reports ≈97.7 % valid for QM9 with hydrogens).
func TestMetricsValidityQM9TestSplit(t *testing.T) {
	requireVenv(t)
	npz := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	mols, err := qm9.ReadNPZ(npz, "test")
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "qm9_test.parquet")
	writeMoleculeTableForMetrics(t, in, mols)
	v := runValidityJSON(t, "--in", in)
	if v.NMolecules != 13083 || v.NValid != 12787 || v.NUnique != 12787 {
		t.Errorf("molecules %d valid %d unique %d, want 13083, 12787, 12787", v.NMolecules, v.NValid, v.NUnique)
	}
}

// TestMetricsValidityWithoutRDKit: a missing interpreter or one without RDKit gives a clear
// error that names ./just setup-py; --help says the metric needs RDKit.
func TestMetricsValidityWithoutRDKit(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.parquet")
	writeMoleculeTableForMetrics(t, in, []molecule.Molecule{bipyramid(1, 6, 1.09)})
	code, _, errs := runCLIForMetrics(t, "metrics", "validity", "--in", in, "--python", filepath.Join(dir, "no-such-python"))
	if code != 1 || !strings.Contains(errs, "needs RDKit") || !strings.Contains(errs, "./just setup-py") {
		t.Errorf("missing python: exit %d: %s", code, errs)
	}
	if exec.Command("/usr/bin/python3", "-c", "import json").Run() == nil &&
		exec.Command("/usr/bin/python3", "-c", "import rdkit").Run() != nil {
		code, _, errs = runCLIForMetrics(t, "metrics", "validity", "--in", in, "--python", "/usr/bin/python3")
		if code != 1 || !strings.Contains(errs, "./just setup-py") {
			t.Errorf("python without RDKit: exit %d: %s", code, errs)
		}
	}
	code, _, errs = runCLIForMetrics(t, "metrics", "validity", "--help")
	if code != 0 || !strings.Contains(errs, "NEEDS RDKit") {
		t.Errorf("--help: exit %d: %s", code, errs)
	}
}
