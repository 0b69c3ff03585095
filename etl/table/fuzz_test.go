package table

// FuzzReadTable writes arbitrary bytes to a file and reads it with every table reader
// (ReadConfigs, ReadMolecules, Schema). Properties:
//   - no panic (arrow-go panics on some corrupt files; the readers must turn them into errors)
//     and no runaway allocation (a forged length in a footer or page header may not make a
//     reader reserve far more memory than the file justifies);
//   - every error names the file;
//   - accepted rows are valid: configurations have a known system and n_particles·dim finite
//     coordinates' worth of values, molecules pass molecule.Validate.
//
// Seeds: testdata/fuzz/FuzzReadTable/, tiny Parquet and Arrow IPC files of real data (DW4
// configurations from the shipped DEM file, QM9 molecules from the shipped Cormorant test
// split), written by TestWriteFuzzCorpus with ENFLOW_WRITE_FUZZ_CORPUS=1; and the inputs the
// fuzzer found, among them arrow-footer-* and parquet-footer-*, which made arrow-go v18.8.0
// allocate gigabytes or overflow its stack until checkFooter validated footers (see
// TestUpstreamArrowGoInputs).

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/internal/shared"
)

// allocated returns the heap bytes allocated while fn ran.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

func FuzzReadTable(f *testing.F) {
	f.Add([]byte("PAR1"))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	f.Add([]byte("ARROW1\x00\x00"))
	f.Add([]byte("ARROW1\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00ARROW1"))
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.tbl")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		limit := uint64(64<<20) + 1024*uint64(len(data))
		check := func(what string, fn func() error) {
			var err error
			if got := allocated(func() { err = fn() }); got > limit {
				t.Fatalf("%s allocated %d MiB for a %d-byte file", what, got>>20, len(data))
			}
			if err != nil && !strings.Contains(err.Error(), "fuzz.tbl") {
				t.Fatalf("%s: error does not name the file: %v", what, err)
			}
		}
		check("Schema", func() error { _, err := Schema(path); return err })
		check("ReadConfigs", func() error {
			cs, err := ReadConfigs(path)
			for i := range cs {
				c := &cs[i]
				sys, serr := particles.SystemByName(c.System)
				if serr != nil || len(c.Positions) != sys.Flat() {
					t.Fatalf("accepted config %d: system %q (%v), %d coordinates", c.ID, c.System, serr, len(c.Positions))
				}
			}
			return err
		})
		check("ReadMolecules", func() error {
			ms, err := ReadMolecules(path)
			for i := range ms {
				if verr := ms[i].Validate(); verr != nil {
					t.Fatalf("accepted an invalid molecule: %v", verr)
				}
			}
			return err
		})
	})
}

// TestWriteFuzzCorpus writes testdata/fuzz/FuzzReadTable/ from the shipped data. Run with
// ENFLOW_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ENFLOW_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set ENFLOW_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	// DW4: the first 4 configurations of the DEM train split, mean removed, with energies.
	vals, _, err := npy.ReadFloat64(shared.Require(t, "data", "dw4", "DEM_train_split_DW4.npy"), npy.Want{Shape: []int{-1, 8}, Finite: true})
	if err != nil {
		t.Fatal(err)
	}
	sys := particles.DW4
	var cfgs []particles.Config
	for i := range 4 {
		pos := append([]float64(nil), vals[i*8:(i+1)*8]...)
		particles.RemoveMean(pos, sys.Dim)
		e, err := sys.Energy(pos)
		if err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, particles.Config{ID: int64(i), Split: "train", System: sys.Name, Positions: pos, Energy: e})
	}
	// QM9: two real molecules of the Cormorant test split (no charges, frequencies or strings).
	all, err := qm9.ReadNPZ(shared.Require(t, "data", "qm9", "cormorant_qm9_test.npz"), qm9.Test)
	if err != nil {
		t.Fatal(err)
	}
	mols := []molecule.Molecule{all[0], all[1]}

	tmp := t.TempDir()
	for _, ext := range formats {
		cp := filepath.Join(tmp, "dw4"+ext)
		writeConfigs(t, cp, cfgs)
		writeTableSeed(t, "real-dw4-4"+strings.ReplaceAll(ext, ".", "-"), cp)
		mp := filepath.Join(tmp, "qm9"+ext)
		writeMolecules(t, mp, mols)
		writeTableSeed(t, "real-qm9-2"+strings.ReplaceAll(ext, ".", "-"), mp)
	}
}

func writeTableSeed(t *testing.T, name, src string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReadTable")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s/%s (%d bytes)", dir, name, len(data))
}
