package qm9

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/sbinet/npyio/npy"
	"github.com/sbinet/npyio/npz"
)

// npyArray is one array of an npz file, decoded to float64 or int64 values in C order.
type npyArray struct {
	dtype  string
	shape  []int
	ints   []int64   // integer dtypes
	floats []float64 // float dtypes
}

// dtypeKind is the numeric kind an npz key must have.
type dtypeKind byte

const (
	kindInt   dtypeKind = 'i' // any signed or unsigned integer dtype
	kindFloat dtypeKind = 'f' // float32 or float64
)

func (k dtypeKind) String() string {
	if k == kindInt {
		return "an integer dtype"
	}
	return "a float dtype"
}

// maxNPYHeader bounds an npy header (numpy writes under 1 kB).
const maxNPYHeader = 1 << 20

// readNPYHeader reads the npy header with npyio, turning a panic of its header parser on
// malformed input into an error.
func readNPYHeader(r io.Reader) (hdr npy.Header, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed npy header: %v", p)
		}
	}()
	// npyio allocates the header length the preamble declares (up to 4 GiB for version 2):
	// check it first.
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:10]); err != nil {
		return npy.Header{}, fmt.Errorf("reading npy preamble: %w", err)
	}
	if !bytes.Equal(pre[:6], npy.Magic[:]) {
		return npy.Header{}, npy.ErrInvalidNumPyFormat
	}
	n := 10
	hlen := int64(binary.LittleEndian.Uint16(pre[8:10]))
	if pre[6] >= 2 {
		if _, err := io.ReadFull(r, pre[10:12]); err != nil {
			return npy.Header{}, fmt.Errorf("reading npy preamble: %w", err)
		}
		n = 12
		hlen = int64(binary.LittleEndian.Uint32(pre[8:12]))
	}
	if hlen > maxNPYHeader {
		return npy.Header{}, fmt.Errorf("npy header of %d bytes, more than %d", hlen, maxNPYHeader)
	}
	nr, err := npy.NewReader(io.MultiReader(bytes.NewReader(pre[:n]), r))
	if err != nil {
		return npy.Header{}, err
	}
	return nr.Header, nil
}

// parseDtype splits a numpy dtype descriptor such as "<f4" into byte order, kind and size.
func parseDtype(descr string) (binary.ByteOrder, byte, int, error) {
	if descr == "" {
		return nil, 0, 0, fmt.Errorf("empty dtype")
	}
	order := binary.ByteOrder(binary.LittleEndian)
	switch descr[0] {
	case '<', '|', '=':
		descr = descr[1:]
	case '>':
		order = binary.BigEndian
		descr = descr[1:]
	}
	if len(descr) < 2 {
		return nil, 0, 0, fmt.Errorf("unsupported dtype %q", descr)
	}
	size, err := strconv.Atoi(descr[1:])
	if err != nil {
		return nil, 0, 0, fmt.Errorf("unsupported dtype %q", descr)
	}
	return order, descr[0], size, nil
}

// readArray reads key from an npz file and checks its dtype kind.
func readArray(r *npz.Reader, key string, kind dtypeKind) (*npyArray, error) {
	rc, err := r.Open(key + ".npy")
	if err != nil {
		return nil, fmt.Errorf("missing or unreadable: %w", err)
	}
	defer rc.Close()
	hdr, err := readNPYHeader(rc)
	if err != nil {
		return nil, err
	}
	a := &npyArray{dtype: hdr.Descr.Type, shape: hdr.Descr.Shape}
	if hdr.Descr.Fortran && len(a.shape) > 1 {
		return nil, fmt.Errorf("fortran_order arrays are not supported")
	}
	order, k, size, err := parseDtype(a.dtype)
	if err != nil {
		return nil, err
	}
	ok := false
	switch kind {
	case kindInt:
		ok = (k == 'i' && (size == 1 || size == 2 || size == 4 || size == 8)) ||
			(k == 'u' && (size == 1 || size == 2 || size == 4))
	case kindFloat:
		ok = k == 'f' && (size == 4 || size == 8)
	}
	if !ok {
		return nil, fmt.Errorf("dtype %s, want %s", a.dtype, kind)
	}
	n := 1
	for _, d := range a.shape {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return nil, fmt.Errorf("implausible shape %v", a.shape)
		}
		n *= d
	}
	// Read through a growing buffer, so that a bogus shape cannot force a huge allocation.
	want := int64(n) * int64(size)
	var buf bytes.Buffer
	buf.Grow(int(min(want, 1<<20)))
	if _, err := buf.ReadFrom(io.LimitReader(rc, want)); err != nil {
		return nil, fmt.Errorf("reading data: %w", err)
	}
	if int64(buf.Len()) != want {
		return nil, fmt.Errorf("data truncated: %d bytes, want %d for shape %v", buf.Len(), want, a.shape)
	}
	raw := buf.Bytes()
	if kind == kindInt {
		a.ints = make([]int64, n)
		for i := range a.ints {
			b := raw[i*size : (i+1)*size]
			switch {
			case k == 'u' && size == 1:
				a.ints[i] = int64(b[0])
			case k == 'u' && size == 2:
				a.ints[i] = int64(order.Uint16(b))
			case k == 'u' && size == 4:
				a.ints[i] = int64(order.Uint32(b))
			case size == 1:
				a.ints[i] = int64(int8(b[0]))
			case size == 2:
				a.ints[i] = int64(int16(order.Uint16(b)))
			case size == 4:
				a.ints[i] = int64(int32(order.Uint32(b)))
			default:
				a.ints[i] = int64(order.Uint64(b))
			}
		}
		return a, nil
	}
	a.floats = make([]float64, n)
	for i := range a.floats {
		if size == 4 {
			a.floats[i] = float64(math.Float32frombits(order.Uint32(raw[i*4:])))
		} else {
			a.floats[i] = math.Float64frombits(order.Uint64(raw[i*8:]))
		}
	}
	return a, nil
}

// checkShape compares a's shape with want; -1 in want matches any size.
func (a *npyArray) checkShape(want ...int) error {
	ok := len(a.shape) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = want[i] < 0 || a.shape[i] == want[i]
	}
	if !ok {
		return fmt.Errorf("shape %v, want %s", a.shape, shapeString(want))
	}
	return nil
}

func shapeString(s []int) string {
	b := []byte{'('}
	for i, d := range s {
		if i > 0 {
			b = append(b, ", "...)
		}
		if d < 0 {
			b = append(b, '*')
		} else {
			b = strconv.AppendInt(b, int64(d), 10)
		}
	}
	if len(s) == 1 {
		b = append(b, ',')
	}
	return string(append(b, ')'))
}
