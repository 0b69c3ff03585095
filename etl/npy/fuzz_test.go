package npy

// FuzzDecode feeds arbitrary bytes to DecodeFloat64 and DecodeInt64. Properties:
//   - no panic and no runaway allocation (a forged header may not make the reader reserve more
//     than the file justifies);
//   - every error wraps exactly one of the package's sentinel errors (the documented contract);
//   - an accepted file has as many values as its shape says, and Encode of the values decodes
//     back to the same values and shape.
//
// Seeds: f.Add cases below plus testdata/fuzz/FuzzDecode/, cut from the shipped DW4 / LJ13
// files by TestWriteFuzzCorpus (ENFLOW_WRITE_FUZZ_CORPUS=1).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"testing"

	"github.com/enflow/enflow/internal/shared"
)

var sentinels = []error{ErrBadMagic, ErrBadHeader, ErrDtype, ErrShape, ErrTruncated, ErrTrailing, ErrNonFinite, ErrInvalidArgs}

// checkSentinel fails unless err wraps exactly one sentinel.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error wraps %d sentinel errors, want exactly 1: %v", n, err)
	}
}

// allocated returns the heap bytes allocated while fn ran.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

func FuzzDecode(f *testing.F) {
	f.Add(rawNPY(dict("<f4", "False", "(2, 3)"), le(binary.LittleEndian, float32(1), 2, 3, 4, 5, 6)))
	f.Add(rawNPY(dict("<f8", "True", "(2, 3)"), le(binary.LittleEndian, 1.0, 2, 3, 4, 5, 6)))
	f.Add(rawNPY(dict(">i4", "False", "(3,)"), le(binary.BigEndian, int32(1), -2, 3)))
	f.Add(rawNPY(dict("|u1", "False", "()"), []byte{7}))
	f.Add(rawNPY(dict("<i8", "False", "(0, 5)"), nil))
	f.Add([]byte("\x93NUMPY\x02\x00\x10\x00\x00\x00{'descr': '<f8'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		limit := uint64(16<<20) + 64*uint64(len(data))
		var floats []float64
		var fshape []int
		var ferr error
		if got := allocated(func() { floats, fshape, ferr = DecodeFloat64("fuzz.npy", data, Want{}) }); got > limit {
			t.Fatalf("DecodeFloat64 allocated %d MiB for %d bytes", got>>20, len(data))
		}
		var ints []int64
		var ishape []int
		var ierr error
		if got := allocated(func() { ints, ishape, ierr = DecodeInt64("fuzz.npy", data, Want{}) }); got > limit {
			t.Fatalf("DecodeInt64 allocated %d MiB for %d bytes", got>>20, len(data))
		}
		if ferr == nil && ierr == nil {
			t.Fatal("both the float and the integer reader accepted the file")
		}
		if ferr != nil {
			checkSentinel(t, ferr)
		} else {
			checkDecoded(t, floats, fshape, func(w *bytes.Buffer, s []int) error { return Encode(w, floats, s...) },
				func(raw []byte) ([]float64, []int, error) { return DecodeFloat64("re.npy", raw, Want{}) })
		}
		if ierr != nil {
			checkSentinel(t, ierr)
		} else {
			checkDecoded(t, ints, ishape, func(w *bytes.Buffer, s []int) error { return Encode(w, ints, s...) },
				func(raw []byte) ([]int64, []int, error) { return DecodeInt64("re.npy", raw, Want{}) })
		}
	})
}

// checkDecoded checks the value count against the shape and an Encode/Decode round trip
// (bitwise for floats, so NaN payloads count).
func checkDecoded[T float64 | int64](t *testing.T, vals []T, shape []int, encode func(*bytes.Buffer, []int) error, decode func([]byte) ([]T, []int, error)) {
	t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	if len(vals) != n {
		t.Fatalf("decoded %d values for shape %v", len(vals), shape)
	}
	if shape == nil {
		shape = []int{} // a scalar: Encode's nil shape would mean 1-D
	}
	var b bytes.Buffer
	if err := encode(&b, shape); err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	back, bshape, err := decode(b.Bytes())
	if err != nil {
		t.Fatalf("decoding the re-encoded file: %v", err)
	}
	if !slices.Equal(bshape, shape) && !(len(bshape) == 0 && len(shape) == 0) {
		t.Fatalf("round trip changed the shape %v to %v", shape, bshape)
	}
	for i := range vals {
		if !sameBits(vals[i], back[i]) {
			t.Fatalf("round trip changed value %d: %v → %v", i, vals[i], back[i])
		}
	}
}

func sameBits[T float64 | int64](a, b T) bool {
	switch x := any(a).(type) {
	case float64:
		return math.Float64bits(x) == math.Float64bits(any(b).(float64))
	}
	return a == b
}

// TestWriteFuzzCorpus writes testdata/fuzz/FuzzDecode/ from the shipped files: the first
// configurations of the DEM DW4 (float32) and LJ13 (float32) splits, and the first entries
// of the real idx_LJ13.npy permutation (int64). Run with ENFLOW_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("ENFLOW_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set ENFLOW_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz")
	}
	for _, c := range []struct {
		name string
		file []string
		rows int
	}{
		{"real-dw4-train-3x8-f4", []string{"data", "dw4", "DEM_train_split_DW4.npy"}, 3},
		{"real-lj13-test-2x39-f4", []string{"data", "lj13", "DEM_test_split_LJ13-1000.npy"}, 2},
	} {
		vals, shape, err := ReadFloat64(shared.Require(t, c.file...), Want{})
		if err != nil {
			t.Fatal(err)
		}
		per := len(vals) / shape[0]
		f32 := make([]float32, c.rows*per)
		for i := range f32 {
			f32[i] = float32(vals[i])
		}
		var b bytes.Buffer
		if err := Encode(&b, f32, c.rows, per); err != nil {
			t.Fatal(err)
		}
		writeSeed(t, c.name, b.Bytes())
	}
	idx, _, err := ReadInt64(shared.Require(t, "data", "lj13", "idx_LJ13.npy"), Want{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Encode(&b, idx[:10]); err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "real-idx-lj13-10-i8", b.Bytes())
}

func writeSeed(t *testing.T, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
