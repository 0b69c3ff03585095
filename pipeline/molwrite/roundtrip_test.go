package molwrite

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/internal/shared"
)

// venvPython returns .tools/venv/bin/python of this checkout (or $ENFLOW_PYTHON). It skips
// the test when the venv is missing, unless CI is set: CI installs it (./just setup-py),
// so there a missing venv is a failure.
func venvPython(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ENFLOW_PYTHON"); p != "" {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, ".tools", "venv", "bin", "python")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set but the Python venv .tools/venv (RDKit, ASE) is missing: run ./just setup-py")
	}
	t.Skip("Python venv .tools/venv with RDKit and ASE not found; run ./just setup-py to enable the RDKit/ASE round-trip tests")
	return ""
}

// readBack reads every format back with ASE (xyz, extxyz) and RDKit (sdf).
const readBack = `
import json, sys
from ase.io import read
from rdkit import Chem, RDLogger
RDLogger.DisableLog("rdApp.*")
xyz, extxyz, sdf, perdir = sys.argv[1:5]
out = {}
def atoms_list(path, fmt):
    res = []
    for a in read(path, index=":", format=fmt):
        info = {}
        for k, v in a.info.items():
            info[k] = v.item() if hasattr(v, "item") else v
        d = {"symbols": a.get_chemical_symbols(), "pos": a.get_positions().tolist(), "info": info}
        if "mulliken" in a.arrays:
            d["mulliken"] = a.arrays["mulliken"].tolist()
        res.append(d)
    return res
out["xyz"] = atoms_list(xyz, "xyz")
out["extxyz"] = atoms_list(extxyz, "extxyz")
def sdf_list(path):
    res = []
    for m in Chem.SDMolSupplier(path, removeHs=False, sanitize=False):
        if m is None:
            res.append(None)
            continue
        conf = m.GetConformer()
        d = {
            "symbols": [a.GetSymbol() for a in m.GetAtoms()],
            "charges": [a.GetFormalCharge() for a in m.GetAtoms()],
            "pos": [list(conf.GetAtomPosition(i)) for i in range(m.GetNumAtoms())],
            "bonds": sorted([sorted([b.GetBeginAtomIdx(), b.GetEndAtomIdx()]) + [int(b.GetBondTypeAsDouble())] for b in m.GetBonds()]),
            "id": m.GetProp("id"),
            "is3d": conf.Is3D(),
        }
        c = Chem.Mol(m)
        try:
            Chem.SanitizeMol(c)
            d["sanitizes"] = True
        except Exception:
            d["sanitizes"] = False
        res.append(d)
    return res
out["sdf"] = sdf_list(sdf)
import os
out["per_sdf"] = [sdf_list(os.path.join(perdir, f))[0] for f in sorted(os.listdir(perdir))]
json.dump(out, sys.stdout)
`

type readAtoms struct {
	Symbols  []string       `json:"symbols"`
	Pos      [][3]float64   `json:"pos"`
	Info     map[string]any `json:"info"`
	Mulliken []float64      `json:"mulliken"`
	Charges  []int          `json:"charges"`
	Bonds    [][3]int       `json:"bonds"`
	ID       string         `json:"id"`
	Is3D     bool           `json:"is3d"`
	Sanitize *bool          `json:"sanitizes"`
}

// TestRoundTripRDKitASE exports real QM9 test molecules (and a charged and a Mulliken
// molecule) to XYZ, extxyz and SDF and reads them back with ASE and RDKit: symbols,
// coordinates to 1e-4 Å, extxyz properties, SDF bonds, bond orders and formal charges.
func TestRoundTripRDKitASE(t *testing.T) {
	python := venvPython(t)
	npz := shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz")
	all, err := qm9.ReadNPZ(npz, "test")
	if err != nil {
		t.Fatal(err)
	}
	mols := append([]molecule.Molecule(nil), all[:300]...)
	f := formaldehyde()
	f.Mulliken = []float64{0.1, -0.3, 0.1, 0.1}
	f.SMILES[0] = `C\C=C/"x" y`
	f.ID = 900001
	am := ammonium()
	am.ID = 900002
	mols = append(mols, f, am)

	dir := t.TempDir()
	in := filepath.Join(dir, "mols.parquet")
	writeTable(t, in, mols)
	ctx := context.Background()
	paths := map[Format]string{XYZ: filepath.Join(dir, "a.xyz"), ExtXYZ: filepath.Join(dir, "b.xyz"), SDF: filepath.Join(dir, "c.sdf")}
	for fm, p := range paths {
		if _, err := Export(ctx, in, p, Options{Format: fm}); err != nil {
			t.Fatal(err)
		}
	}
	per := filepath.Join(dir, "per")
	if _, err := Export(ctx, in, per, Options{Format: SDF, PerMolecule: true}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", readBack, paths[XYZ], paths[ExtXYZ], paths[SDF], per)
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", python, err)
	}
	var got map[string][]*readAtoms
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"xyz", "extxyz", "sdf", "per_sdf"} {
		if len(got[key]) != len(mols) {
			t.Fatalf("%s: read %d molecules, wrote %d", key, len(got[key]), len(mols))
		}
	}
	byID := map[string]*readAtoms{}
	for _, r := range got["per_sdf"] {
		byID[r.ID] = r
	}
	nBonds, nCharged := 0, 0
	for i := range mols {
		m := &mols[i]
		for _, key := range []string{"xyz", "extxyz", "sdf"} {
			r := got[key][i]
			if r == nil {
				t.Fatalf("%s: molecule %d unreadable", key, m.ID)
			}
			checkAtoms(t, key, m, r)
		}
		e := got["extxyz"][i]
		if id, _ := e.Info["id"].(float64); int64(id) != m.ID {
			t.Errorf("extxyz molecule %d: info id %v", m.ID, e.Info["id"])
		}
		if n, _ := e.Info["n_atoms"].(float64); int(n) != len(m.Z) {
			t.Errorf("extxyz molecule %d: info n_atoms %v", m.ID, e.Info["n_atoms"])
		}
		for k, name := range molecule.PropertyNames {
			v, ok := e.Info[name].(float64)
			if math.IsNaN(m.Props[k]) {
				if ok {
					t.Errorf("extxyz molecule %d: %s=%v for a missing property", m.ID, name, v)
				}
			} else if !ok || v != m.Props[k] {
				t.Errorf("extxyz molecule %d: %s=%v, want %v", m.ID, name, e.Info[name], m.Props[k])
			}
		}
		if m.SMILES[0] != "" && e.Info["smiles"] != m.SMILES[0] {
			t.Errorf("extxyz molecule %d: smiles %q, want %q", m.ID, e.Info["smiles"], m.SMILES[0])
		}
		if m.Mulliken != nil {
			for a := range m.Mulliken {
				if len(e.Mulliken) != len(m.Mulliken) || e.Mulliken[a] != m.Mulliken[a] {
					t.Errorf("extxyz molecule %d: mulliken %v, want %v", m.ID, e.Mulliken, m.Mulliken)
					break
				}
			}
		}
		bonds, err := Bonds(m)
		if err != nil {
			t.Fatal(err)
		}
		charges := FormalCharges(m.Z, bonds)
		for _, s := range []*readAtoms{got["sdf"][i], byID[itoa(m.ID)]} {
			if s == nil {
				t.Fatalf("sdf molecule %d missing", m.ID)
			}
			checkAtoms(t, "sdf", m, s)
			if !s.Is3D {
				t.Errorf("sdf molecule %d: conformer not 3D", m.ID)
			}
			if len(s.Bonds) != len(bonds) {
				t.Fatalf("sdf molecule %d: %d bonds, want %d", m.ID, len(s.Bonds), len(bonds))
			}
			for k, b := range bonds { // Bonds are sorted by (i, j) like the Python side
				if s.Bonds[k] != [3]int{b.I, b.J, b.Order} {
					t.Errorf("sdf molecule %d: bond %v, want %v", m.ID, s.Bonds[k], b)
				}
			}
			for a := range charges {
				if s.Charges[a] != charges[a] {
					t.Errorf("sdf molecule %d atom %d: charge %d, want %d", m.ID, a, s.Charges[a], charges[a])
				}
			}
		}
		nBonds += len(bonds)
		for _, q := range charges {
			if q != 0 {
				nCharged++
			}
		}
	}
	if nBonds == 0 || nCharged == 0 {
		t.Errorf("round trip covered %d bonds and %d charged atoms; want both > 0", nBonds, nCharged)
	}
	// The ammonium cation only sanitizes thanks to its M  CHG line.
	if s := got["sdf"][len(mols)-1]; s.Sanitize == nil || !*s.Sanitize {
		t.Errorf("ammonium SDF record does not sanitize in RDKit")
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func checkAtoms(t *testing.T, key string, m *molecule.Molecule, r *readAtoms) {
	t.Helper()
	if len(r.Symbols) != len(m.Z) || len(r.Pos) != len(m.Z) {
		t.Fatalf("%s molecule %d: %d symbols, %d positions, want %d", key, m.ID, len(r.Symbols), len(r.Pos), len(m.Z))
	}
	for a, z := range m.Z {
		if sym, _ := Symbol(z); r.Symbols[a] != sym {
			t.Errorf("%s molecule %d atom %d: %s, want %s", key, m.ID, a, r.Symbols[a], sym)
		}
		for k := range 3 {
			if d := math.Abs(r.Pos[a][k] - m.Positions[a][k]); !(d <= 1e-4) {
				t.Errorf("%s molecule %d atom %d: coordinate %d off by %g Å", key, m.ID, a, k, d)
			}
		}
	}
}
