package torchimport

// Fuzz targets for the PyTorch readers. Properties on every input:
//   - no panic and no runaway allocation: a forged size in a zip header or pickle may not make
//     the reader reserve far more memory than the input justifies (the Limits bound what is
//     read; this bounds what is allocated);
//   - errors name the input;
//   - an accepted state dict is self-consistent (keys ↔ tensors, values ↔ shape and dtype).
//
// Seeds: testdata/fuzz/<Target>/, cut from the shipped en_flows checkpoint by
// TestWriteFuzzCorpus (ENFLOW_WRITE_FUZZ_CORPUS=1): the real args.pickle, and a torch.save
// zip holding the first tensors of the real flow.npy (its pickle cut after them, with their
// real storages).

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/metrics"
	"strings"
	"testing"

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

func checkAllocBudget(t *testing.T, what string, n int, fn func()) {
	t.Helper()
	limit := uint64(64<<20) + 1024*uint64(n)
	if got := allocated(fn); got > limit {
		t.Fatalf("%s allocated %d MiB for a %d-byte input (budget %d MiB)", what, got>>20, n, limit>>20)
	}
}

func FuzzReadStateDict(f *testing.F) {
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Add([]byte("\x80\x02}q\x00."))
	f.Fuzz(func(t *testing.T, data []byte) {
		var sd *StateDict
		var err error
		checkAllocBudget(t, "ReadStateDict", len(data), func() {
			sd, err = ReadStateDict(bytes.NewReader(data), int64(len(data)), "fuzz.pt", Limits{})
		})
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.pt") {
				t.Fatalf("error does not name the input: %v", err)
			}
			return
		}
		if len(sd.Keys) != len(sd.Tensors) {
			t.Fatalf("%d keys for %d tensors", len(sd.Keys), len(sd.Tensors))
		}
		for _, k := range sd.Keys {
			tn := sd.Tensors[k]
			if tn == nil {
				t.Fatalf("key %q has no tensor", k)
			}
			n := tn.NumElements()
			for _, d := range tn.Shape {
				if d < 0 {
					t.Fatalf("tensor %q: negative dimension in %v", k, tn.Shape)
				}
			}
			if tn.IsFloat() && (len(tn.Float) != n || tn.Int != nil) || !tn.IsFloat() && (len(tn.Int) != n || tn.Float != nil) {
				t.Fatalf("tensor %q %s %v: %d float and %d int values", k, tn.DType, tn.Shape, len(tn.Float), len(tn.Int))
			}
		}
	})
}

func FuzzParseNamespace(f *testing.F) {
	f.Add([]byte("\x80\x02cargparse\nNamespace\nq\x00)\x81q\x01}q\x02b."))
	f.Add([]byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR."))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ns Namespace
		var err error
		checkAllocBudget(t, "ParseNamespace", len(data), func() { ns, err = ParseNamespace(data, Limits{}) })
		if err != nil {
			return
		}
		for _, k := range ns.Keys() {
			if _, ok := ns[k]; !ok {
				t.Fatalf("Keys lists %q, absent from the namespace", k)
			}
		}
	})
}

// TestWriteFuzzCorpus writes testdata/fuzz/ from the shipped en_flows checkpoint. Run with
// ENFLOW_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ENFLOW_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set ENFLOW_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	dir := shared.Require(t, "data", "pretrained", "en_flows_qm9")
	args, err := os.ReadFile(filepath.Join(dir, "args.pickle"))
	if err != nil {
		t.Fatal(err)
	}
	writeFuzzSeed(t, "FuzzParseNamespace", "real-args-pickle", args)

	for _, n := range []int{1, 3} {
		writeFuzzSeed(t, "FuzzReadStateDict", fmt.Sprintf("real-flow-first-%d-tensors", n), headStateDict(t, filepath.Join(dir, "flow.npy"), n))
	}
}

// tensorEnds returns the offsets just after the first n _rebuild_tensor_v2 values of a
// torch.save pickle (protocol 2, one-byte memo indices), which end with NEWFALSE, BINGET x,
// EMPTY_TUPLE, REDUCE, BINPUT x, TUPLE, BINPUT x, REDUCE, BINPUT x.
func tensorEnds(pkl []byte, n int) []int {
	pat := []byte{0x89, 'h', 0, ')', 'R', 'q', 0, 't', 'q', 0, 'R', 'q', 0} // 0: any memo byte
	var out []int
	for i := 0; i+len(pat) <= len(pkl) && len(out) < n; i++ {
		ok := true
		for j, c := range pat {
			if c != 0 && pkl[i+j] != c {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, i+len(pat))
		}
	}
	return out
}

// storageKey matches the storage key string of a persistent id (a BINUNICODE of digits).
var storageKey = regexp.MustCompile(`X[\x01-\x20]\x00\x00\x00([0-9]+)q`)

// headStateDict rewrites a real torch.save zip with its first n tensors: the pickle is cut
// after the n-th tensor and closed (SETITEMS, STOP), and only their storages are kept.
func headStateDict(t *testing.T, path string, n int) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string]*zip.File{}
	var pklName string
	for _, f := range zr.File {
		files[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") {
			pklName = f.Name
		}
	}
	read := func(name string) []byte {
		rc, err := files[name].Open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	pkl := read(pklName)
	ends := tensorEnds(pkl, n)
	if len(ends) < n {
		t.Fatalf("found %d tensor ends in %s", len(ends), pklName)
	}
	cut := append(append([]byte(nil), pkl[:ends[n-1]]...), 'u', '.')
	prefix := strings.TrimSuffix(pklName, "data.pkl")
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	put := func(name string, data []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	put(pklName, cut)
	for _, m := range storageKey.FindAllSubmatch(cut, -1) {
		name := prefix + "data/" + string(m[1])
		if files[name] != nil {
			put(name, read(name))
		}
	}
	if v := prefix + "version"; files[v] != nil {
		put(v, read(v))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	// The cut file must be a valid state dict with n tensors.
	sd, err := ReadStateDict(bytes.NewReader(out.Bytes()), int64(out.Len()), "seed", Limits{})
	if err != nil || len(sd.Keys) != n {
		t.Fatalf("seed with %d tensors does not read back: %v", n, err)
	}
	return out.Bytes()
}

func writeFuzzSeed(t *testing.T, target, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s/%s (%d bytes)", dir, name, len(data))
}
