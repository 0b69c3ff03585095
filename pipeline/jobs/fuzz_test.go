package jobs

// FuzzParseSpec feeds arbitrary text to the job-spec parser. Properties: no panic, no runaway
// allocation (a spec is a few kB; nothing it says may make the parser reserve gigabytes), errors
// name the spec file, and an accepted spec keeps its path and has something to do.
//
// Seeds: testdata/fuzz/FuzzParseSpec/, copies of the shipped jobs/*.toml written by
// TestWriteFuzzCorpus (ENFLOW_WRITE_FUZZ_CORPUS=1), plus the f.Add cases below.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"
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

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte("[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [100]\nseeds = [1, 2]\n[train]\nepochs = 3\n"))
	f.Add([]byte("[[evaluation]]\nkind = \"js\"\nsamples = \"x.parquet\"\ndataset = \"qm9_positional\"\n"))
	f.Add([]byte("name = \"x\"\nepochs = = 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/fuzz/spec.toml"
		var s *Spec
		var err error
		limit := uint64(64<<20) + 1024*uint64(len(data))
		if got := allocated(func() { s, err = ParseSpec(path, data) }); got > limit {
			t.Fatalf("ParseSpec allocated %d MiB for %d bytes", got>>20, len(data))
		}
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the spec: %v", err)
			}
			return
		}
		if s.Path != path || len(s.Experiments)+len(s.Evaluations) == 0 {
			t.Fatalf("accepted spec: path %q, %d experiments, %d evaluations", s.Path, len(s.Experiments), len(s.Evaluations))
		}
	})
}

// TestWriteFuzzCorpus copies the shipped job specs into testdata/fuzz/FuzzParseSpec/. Run with
// ENFLOW_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ENFLOW_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set ENFLOW_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	specs, err := filepath.Glob(filepath.Join("..", "..", "jobs", "*.toml"))
	if err != nil || len(specs) == 0 {
		t.Fatalf("no shipped specs (%v)", err)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseSpec")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range specs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := "shipped-" + strings.TrimSuffix(filepath.Base(p), ".toml")
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
