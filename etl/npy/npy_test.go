package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enflow/enflow/internal/shared"
)

// rawNPY builds a version-1.0 .npy file from a header dict and a payload.
func rawNPY(dict string, payload []byte) []byte {
	hdr := dict + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	b.Write(payload)
	return b.Bytes()
}

func dict(descr, order, shape string) string {
	return "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }"
}

func le[T any](order binary.ByteOrder, v ...T) []byte {
	var b bytes.Buffer
	binary.Write(&b, order, v)
	return b.Bytes()
}

func TestDecodeFloat64(t *testing.T) {
	f4 := le(binary.LittleEndian, float32(1), 2, 3, 4, 5, 6)
	f8 := le(binary.LittleEndian, 1.0, 2, 3, 4, 5, 6)
	nan := le(binary.LittleEndian, 1.0, math.NaN(), 3, 4, 5, 6)
	inf := le(binary.LittleEndian, 1.0, 2, 3, 4, 5, math.Inf(-1))
	one23456 := []float64{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name      string
		raw       []byte
		want      Want
		wantVals  []float64
		wantShape []int
		wantErr   error
	}{
		{"f4 C order", rawNPY(dict("<f4", "False", "(2, 3)"), f4), Want{}, one23456, []int{2, 3}, nil},
		{"f8 C order", rawNPY(dict("<f8", "False", "(2, 3)"), f8), Want{Shape: []int{-1, 3}, Finite: true}, one23456, []int{2, 3}, nil},
		{"f8 big endian", rawNPY(dict(">f8", "False", "(6,)"), le(binary.BigEndian, 1.0, 2, 3, 4, 5, 6)), Want{Shape: []int{6}}, one23456, []int{6}, nil},
		// Fortran (2,3): memory holds column by column: a00 a10 a01 a11 a02 a12.
		{"f4 Fortran order", rawNPY(dict("<f4", "True", "(2, 3)"), le(binary.LittleEndian, float32(1), 4, 2, 5, 3, 6)), Want{}, one23456, []int{2, 3}, nil},
		{"scalar", rawNPY(dict("<f8", "False", "()"), le(binary.LittleEndian, 7.5)), Want{}, []float64{7.5}, nil, nil},
		{"empty array", rawNPY(dict("<f4", "False", "(0, 8)"), nil), Want{Shape: []int{-1, 8}}, []float64{}, []int{0, 8}, nil},
		{"NaN allowed", rawNPY(dict("<f8", "False", "(2, 3)"), nan), Want{}, nil, []int{2, 3}, nil},
		{"NaN forbidden", rawNPY(dict("<f8", "False", "(2, 3)"), nan), Want{Finite: true}, nil, nil, ErrNonFinite},
		{"Inf forbidden", rawNPY(dict("<f8", "False", "(2, 3)"), inf), Want{Finite: true}, nil, nil, ErrNonFinite},
		{"bad magic", append([]byte("\x93NUMPX"), rawNPY(dict("<f4", "False", "(2, 3)"), f4)[6:]...), Want{}, nil, nil, ErrBadMagic},
		{"empty file", nil, Want{}, nil, nil, ErrBadMagic},
		{"text file", []byte("hello world, this is not numpy"), Want{}, nil, nil, ErrBadMagic},
		{"truncated preamble", []byte("\x93NUMPY\x01\x00\x76"), Want{}, nil, nil, ErrTruncated},
		{"truncated header", rawNPY(dict("<f4", "False", "(2, 3)"), f4)[:40], Want{}, nil, nil, ErrTruncated},
		{"truncated data", rawNPY(dict("<f4", "False", "(2, 3)"), f4[:20]), Want{}, nil, nil, ErrTruncated},
		{"trailing data", rawNPY(dict("<f4", "False", "(2, 3)"), append(f4, 0, 0, 0, 0)), Want{}, nil, nil, ErrTrailing},
		{"version 3", append([]byte("\x93NUMPY\x03\x00"), rawNPY(dict("<f4", "False", "(2, 3)"), f4)[8:]...), Want{}, nil, nil, ErrBadHeader},
		{"header without newline", func() []byte {
			b := rawNPY(dict("<f4", "False", "(2, 3)"), f4)
			b[10+len(dict("<f4", "False", "(2, 3)"))] = ' '
			return b
		}(), Want{}, nil, nil, ErrBadHeader},
		{"garbled dict", rawNPY("{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4), Want{}, nil, nil, ErrBadHeader},
		{"missing shape", rawNPY("{'descr': '<f4', 'fortran_order': False, }", f4), Want{}, nil, nil, ErrBadHeader},
		{"negative shape", rawNPY(dict("<f4", "False", "(-2, 3)"), f4), Want{}, nil, nil, ErrBadHeader},
		{"bad fortran flag", rawNPY(dict("<f4", "Maybe", "(2, 3)"), f4), Want{}, nil, nil, ErrBadHeader},
		{"object dtype", rawNPY(dict("|O", "False", "(2,)"), make([]byte, 16)), Want{}, nil, nil, ErrDtype},
		{"float16", rawNPY(dict("<f2", "False", "(2, 3)"), make([]byte, 12)), Want{}, nil, nil, ErrDtype},
		{"complex", rawNPY(dict("<c8", "False", "(2, 3)"), make([]byte, 48)), Want{}, nil, nil, ErrDtype},
		{"structured", rawNPY("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,), }", make([]byte, 8)), Want{}, nil, nil, ErrBadHeader},
		{"int file as float", rawNPY(dict("<i8", "False", "(2,)"), make([]byte, 16)), Want{}, nil, nil, ErrDtype},
		{"shape mismatch cols", rawNPY(dict("<f4", "False", "(2, 3)"), f4), Want{Shape: []int{-1, 8}}, nil, nil, ErrShape},
		{"shape mismatch rank", rawNPY(dict("<f4", "False", "(6,)"), f4), Want{Shape: []int{-1, 3}}, nil, nil, ErrShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vals, shape, err := DecodeFloat64("some/file.npy", tc.raw, tc.want)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "some/file.npy") {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(shape, tc.wantShape) {
				t.Errorf("shape = %v, want %v", shape, tc.wantShape)
			}
			if tc.wantVals != nil && !reflect.DeepEqual(vals, tc.wantVals) {
				t.Errorf("values = %v, want %v", vals, tc.wantVals)
			}
			if len(vals) != (Info{Shape: shape}).Len() {
				t.Errorf("len(values) = %d, want %d", len(vals), (Info{Shape: shape}).Len())
			}
		})
	}
}

func TestDecodeInt64(t *testing.T) {
	tests := []struct {
		name     string
		raw      []byte
		want     Want
		wantVals []int64
		wantErr  error
	}{
		{"i8", rawNPY(dict("<i8", "False", "(3,)"), le(binary.LittleEndian, int64(-1), 5, 1<<40)), Want{Shape: []int{3}}, []int64{-1, 5, 1 << 40}, nil},
		{"i4", rawNPY(dict("<i4", "False", "(3,)"), le(binary.LittleEndian, int32(-7), 0, 9)), Want{}, []int64{-7, 0, 9}, nil},
		{"i2 big endian", rawNPY(dict(">i2", "False", "(2,)"), le(binary.BigEndian, int16(-300), 300)), Want{}, []int64{-300, 300}, nil},
		{"i1", rawNPY(dict("|i1", "False", "(2,)"), []byte{0xff, 3}), Want{}, []int64{-1, 3}, nil},
		{"u1", rawNPY(dict("|u1", "False", "(2,)"), []byte{0xff, 3}), Want{}, []int64{255, 3}, nil},
		{"u4", rawNPY(dict("<u4", "False", "(1,)"), le(binary.LittleEndian, uint32(4000000000))), Want{}, []int64{4000000000}, nil},
		{"i8 Fortran 2x2", rawNPY(dict("<i8", "True", "(2, 2)"), le(binary.LittleEndian, int64(1), 3, 2, 4)), Want{}, []int64{1, 2, 3, 4}, nil},
		{"u8 unsupported", rawNPY(dict("<u8", "False", "(1,)"), make([]byte, 8)), Want{}, nil, ErrDtype},
		{"float file as int", rawNPY(dict("<f4", "False", "(1,)"), make([]byte, 4)), Want{}, nil, ErrDtype},
		{"truncated", rawNPY(dict("<i8", "False", "(3,)"), make([]byte, 17)), Want{}, nil, ErrTruncated},
		{"shape mismatch", rawNPY(dict("<i8", "False", "(3,)"), make([]byte, 24)), Want{Shape: []int{4}}, nil, ErrShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vals, _, err := DecodeInt64("idx.npy", tc.raw, tc.want)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "idx.npy") {
					t.Fatalf("err = %v, want %v naming idx.npy", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(vals, tc.wantVals) {
				t.Errorf("values = %v, want %v", vals, tc.wantVals)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		write func(path string) error
		read  func(path string) (any, []int, error)
		want  any
		shape []int
	}{
		{"float64 2-D",
			func(p string) error { return Write(p, []float64{1.5, -2, 3, 4, 5, 6}, 3, 2) },
			func(p string) (any, []int, error) { return ReadFloat64(p, Want{Shape: []int{-1, 2}}) },
			[]float64{1.5, -2, 3, 4, 5, 6}, []int{3, 2}},
		{"float32 3-D",
			func(p string) error { return Write(p, []float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2) },
			func(p string) (any, []int, error) { return ReadFloat64(p, Want{}) },
			[]float64{1, 2, 3, 4, 5, 6, 7, 8}, []int{2, 2, 2}},
		{"int64 1-D default shape",
			func(p string) error { return Write(p, []int64{3, 1, 2}) },
			func(p string) (any, []int, error) { return ReadInt64(p, Want{Shape: []int{3}}) },
			[]int64{3, 1, 2}, []int{3}},
		{"int32 empty",
			func(p string) error { return Write(p, []int32{}, 0, 4) },
			func(p string) (any, []int, error) { return ReadInt64(p, Want{}) },
			[]int64{}, []int{0, 4}},
		{"uint8",
			func(p string) error { return Write(p, []uint8{0, 255}) },
			func(p string) (any, []int, error) { return ReadInt64(p, Want{}) },
			[]int64{0, 255}, []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".npy")
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			info, off, err := parseHeader(path, raw)
			if err != nil {
				t.Fatal(err)
			}
			if off%64 != 0 {
				t.Errorf("data offset %d not 64-byte aligned", off)
			}
			if !reflect.DeepEqual(info.Shape, tc.shape) {
				t.Errorf("header shape %v, want %v", info.Shape, tc.shape)
			}
			got, shape, err := tc.read(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(shape, tc.shape) {
				t.Errorf("read back %v %v, want %v %v", got, shape, tc.want, tc.shape)
			}
			st, err := Stat(path)
			if err != nil || !reflect.DeepEqual(st.Shape, tc.shape) {
				t.Errorf("Stat = %+v, %v; want shape %v", st, err, tc.shape)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keep.npy")
	if err := Write(path, []float64{1, 2}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	tests := []struct {
		name  string
		data  []float64
		shape []int
	}{
		{"shape too small", []float64{1, 2, 3}, []int{2}},
		{"shape too large", []float64{1, 2, 3}, []int{2, 2}},
		{"negative", []float64{}, []int{-1, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(path, tc.data, tc.shape...)
			if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrInvalidArgs naming %s", err, path)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Error("failed write modified the existing file")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want 1 (no temp files)", len(entries))
			}
		})
	}
}

func TestReadMissingFile(t *testing.T) {
	_, _, err := ReadFloat64(filepath.Join(t.TempDir(), "nope.npy"), Want{})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.npy") {
		t.Fatalf("err = %v, want not-exist naming the file", err)
	}
}

// TestShippedFiles reads the real data files of the shared folder.
func TestShippedFiles(t *testing.T) {
	tests := []struct {
		file  string
		shape []int
	}{
		{"dw4/DEM_test_split_DW4.npy", []int{10000, 8}},
		{"lj13/DEM_val_split_LJ13-1000.npy", []int{10000, 39}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := shared.Require(t, "data", tc.file)
			vals, shape, err := ReadFloat64(path, Want{Shape: []int{-1, tc.shape[1]}, Finite: true})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(shape, tc.shape) || len(vals) != tc.shape[0]*tc.shape[1] {
				t.Fatalf("shape %v len %d, want %v", shape, len(vals), tc.shape)
			}
		})
	}
	t.Run("idx_LJ13 is a permutation", func(t *testing.T) {
		path := shared.Require(t, "data", "lj13", "idx_LJ13.npy")
		idx, shape, err := ReadInt64(path, Want{Shape: []int{100001}})
		if err != nil {
			t.Fatal(err)
		}
		if shape[0] != 100001 || idx[0] != 83633 || idx[1] != 64140 {
			t.Fatalf("shape %v, first entries %v", shape, idx[:2])
		}
		seen := make([]bool, len(idx))
		for i, v := range idx {
			if v < 0 || int(v) >= len(idx) || seen[v] {
				t.Fatalf("entry %d = %d breaks the permutation", i, v)
			}
			seen[v] = true
		}
	})
}
