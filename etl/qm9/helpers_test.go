package qm9

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// sharedData is the read-only directory of real QM9 files (see /work/shared/data/README.md).
var sharedData = func() string {
	if d := os.Getenv("ENFLOW_SHARED_DATA"); d != "" {
		return d
	}
	return "/work/shared/data"
}()

func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(sharedData, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared data file missing: %v", err)
	}
	return p
}

// readIDList reads one integer per line.
func readIDList(t testing.TB, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

var (
	testNPZOnce sync.Once
	testNPZMols []molecule.Molecule
	testNPZErr  error
)

// testSplitMolecules reads the shared Cormorant test split once per test binary.
func testSplitMolecules(t testing.TB) []molecule.Molecule {
	t.Helper()
	path := sharedFile(t, "qm9/cormorant_qm9_test.npz")
	testNPZOnce.Do(func() { testNPZMols, testNPZErr = ReadNPZ(path, Test) })
	if testNPZErr != nil {
		t.Fatal(testNPZErr)
	}
	return testNPZMols
}
