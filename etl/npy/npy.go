// Package npy reads and writes NumPy .npy files for the ETL.
//
// Reading is a thin, defensive layer over github.com/sbinet/npyio/npy: the file is read into
// memory, its preamble is checked here (magic, version, header length, terminating newline)
// before npyio parses the header dictionary, and the payload length is checked against the
// shape so that truncated or padded files are rejected (npyio silently zero-fills short data).
// Values are returned flattened in C (row-major) order together with the shape; Fortran-order
// arrays are transposed into C order.
//
// Every error names the file and wraps one of the sentinel errors below, so callers can test
// with errors.Is.
//
// Writing produces version 1.0 files (2.0 when the header would not fit) with a header padded
// to a 64-byte boundary, as numpy does, little-endian, C order. Files are written atomically
// through etl/atomicfile.
package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/enflow/enflow/etl/atomicfile"
	snpy "github.com/sbinet/npyio/npy"
)

// Sentinel errors; every returned error wraps exactly one of them.
var (
	ErrBadMagic    = errors.New("not a .npy file (bad magic)")
	ErrBadHeader   = errors.New("malformed .npy header")
	ErrDtype       = errors.New("unsupported dtype")
	ErrShape       = errors.New("shape mismatch")
	ErrTruncated   = errors.New("truncated data")
	ErrTrailing    = errors.New("trailing bytes after data")
	ErrNonFinite   = errors.New("non-finite value")
	ErrInvalidArgs = errors.New("invalid arguments")
)

// Want states what the caller expects of a file. The zero value accepts any shape and any
// value.
type Want struct {
	// Shape is the expected shape; an entry of -1 matches any length on that axis. A nil
	// Shape accepts any shape (including a scalar).
	Shape []int
	// Finite rejects NaN and ±Inf (float reads only).
	Finite bool
}

// Info describes a parsed .npy header.
type Info struct {
	Dtype   string // numpy descr, e.g. "<f4"
	Fortran bool   // stored in Fortran (column-major) order
	Shape   []int  // nil for a scalar
}

// Len is the number of elements (the product of the shape).
func (i Info) Len() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// dtype kinds understood by this package.
type kind int

const (
	kindFloat kind = iota + 1
	kindInt
)

type dtypeInfo struct {
	kind kind
	size int
}

// dtypes maps the type code (without byte-order character) to its kind and size. Unsigned
// 64-bit integers are rejected: they do not fit int64 in general.
var dtypes = map[string]dtypeInfo{
	"f4": {kindFloat, 4}, "f8": {kindFloat, 8},
	"i1": {kindInt, 1}, "i2": {kindInt, 2}, "i4": {kindInt, 4}, "i8": {kindInt, 8},
	"u1": {kindInt, 1}, "u2": {kindInt, 2}, "u4": {kindInt, 4},
}

func splitDtype(descr string) (order byte, code string) {
	if descr == "" {
		return 0, ""
	}
	switch descr[0] {
	case '<', '>', '|', '=':
		return descr[0], descr[1:]
	}
	return '=', descr
}

// ReadFloat64 reads a float32 or float64 .npy file into float64 values (C order) and returns
// them with the shape. Integer files are rejected with ErrDtype.
func ReadFloat64(path string, want Want) ([]float64, []int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: %w", err)
	}
	return DecodeFloat64(path, raw, want)
}

// ReadInt64 reads a signed (8–64 bit) or unsigned (8–32 bit) integer .npy file into int64
// values (C order) and returns them with the shape. Float files are rejected with ErrDtype.
func ReadInt64(path string, want Want) ([]int64, []int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("npy: %w", err)
	}
	return DecodeInt64(path, raw, want)
}

// Stat reads only the header of a .npy file.
func Stat(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, fmt.Errorf("npy: %w", err)
	}
	defer f.Close()
	// The preamble is at most 12 bytes and the header at most a few kB in practice; read
	// enough for both, then parse from memory.
	buf := make([]byte, 1<<16)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Info{}, fmt.Errorf("npy: %s: %w", path, err)
	}
	info, _, err := parseHeader(path, buf[:n])
	return info, err
}

// DecodeFloat64 is ReadFloat64 on the bytes of a file; name is used in errors.
func DecodeFloat64(name string, raw []byte, want Want) ([]float64, []int, error) {
	info, dt, payload, err := decodeCommon(name, raw, want)
	if err != nil {
		return nil, nil, err
	}
	if dt.kind != kindFloat {
		return nil, nil, fmt.Errorf("npy: %s: %w %q (want float32 or float64)", name, ErrDtype, info.Dtype)
	}
	var out []float64
	switch dt.size {
	case 4:
		var v []float32
		if err := readWith(name, payload, &v); err != nil {
			return nil, nil, err
		}
		out = make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
	case 8:
		if err := readWith(name, payload, &out); err != nil {
			return nil, nil, err
		}
	}
	if len(out) != info.Len() {
		return nil, nil, fmt.Errorf("npy: %s: %w: decoded %d values, header says %d", name, ErrTruncated, len(out), info.Len())
	}
	if info.Fortran {
		out = toCOrder(out, info.Shape)
	}
	if want.Finite {
		for i, x := range out {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, nil, fmt.Errorf("npy: %s: %w %v at element %d (index %v)", name, ErrNonFinite, x, i, unravel(i, info.Shape))
			}
		}
	}
	return out, info.Shape, nil
}

// DecodeInt64 is ReadInt64 on the bytes of a file; name is used in errors.
func DecodeInt64(name string, raw []byte, want Want) ([]int64, []int, error) {
	info, dt, payload, err := decodeCommon(name, raw, want)
	if err != nil {
		return nil, nil, err
	}
	if dt.kind != kindInt {
		return nil, nil, fmt.Errorf("npy: %s: %w %q (want an integer dtype)", name, ErrDtype, info.Dtype)
	}
	_, code := splitDtype(info.Dtype)
	var out []int64
	switch code {
	case "i1":
		out, err = readConvert[int8](name, payload)
	case "i2":
		out, err = readConvert[int16](name, payload)
	case "i4":
		out, err = readConvert[int32](name, payload)
	case "i8":
		err = readWith(name, payload, &out)
	case "u1":
		out, err = readConvert[uint8](name, payload)
	case "u2":
		out, err = readConvert[uint16](name, payload)
	case "u4":
		out, err = readConvert[uint32](name, payload)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(out) != info.Len() {
		return nil, nil, fmt.Errorf("npy: %s: %w: decoded %d values, header says %d", name, ErrTruncated, len(out), info.Len())
	}
	if info.Fortran {
		out = toCOrder(out, info.Shape)
	}
	return out, info.Shape, nil
}

func readConvert[T int8 | int16 | int32 | uint8 | uint16 | uint32](name string, payload []byte) ([]int64, error) {
	var v []T
	if err := readWith(name, payload, &v); err != nil {
		return nil, err
	}
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out, nil
}

// readWith lets npyio parse the header and decode the payload (file bytes from the start)
// into ptr. A panic inside npyio on malformed input is turned into an error.
func readWith(name string, file []byte, ptr any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("npy: %s: %w: npyio: %v", name, ErrBadHeader, r)
		}
	}()
	r, err := snpy.NewReader(bytes.NewReader(file))
	if err != nil {
		return fmt.Errorf("npy: %s: %w: %v", name, ErrBadHeader, err)
	}
	if err := r.Read(ptr); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("npy: %s: %w: npyio cannot decode it: %v", name, ErrDtype, err)
	}
	return nil
}

// decodeCommon validates the preamble, header, dtype, shape and payload length. It returns
// the whole file as payload (npyio re-reads the header).
func decodeCommon(name string, raw []byte, want Want) (Info, dtypeInfo, []byte, error) {
	info, dataOff, err := parseHeader(name, raw)
	if err != nil {
		return Info{}, dtypeInfo{}, nil, err
	}
	order, code := splitDtype(info.Dtype)
	dt, ok := dtypes[code]
	if !ok || order == '|' && dt.size > 1 {
		return Info{}, dtypeInfo{}, nil, fmt.Errorf("npy: %s: %w %q", name, ErrDtype, info.Dtype)
	}
	if want.Shape != nil && !shapeMatches(info.Shape, want.Shape) {
		return Info{}, dtypeInfo{}, nil, fmt.Errorf("npy: %s: %w: got %s, want %s", name, ErrShape, ShapeString(info.Shape), ShapeString(want.Shape))
	}
	n, err := elems(info.Shape)
	if err != nil {
		return Info{}, dtypeInfo{}, nil, fmt.Errorf("npy: %s: %w: %v", name, ErrBadHeader, err)
	}
	have := int64(len(raw) - dataOff)
	need := int64(n) * int64(dt.size)
	switch {
	case have < need:
		return Info{}, dtypeInfo{}, nil, fmt.Errorf("npy: %s: %w: shape %s of %s needs %d data bytes, file has %d", name, ErrTruncated, ShapeString(info.Shape), info.Dtype, need, have)
	case have > need:
		return Info{}, dtypeInfo{}, nil, fmt.Errorf("npy: %s: %w: shape %s of %s needs %d data bytes, file has %d", name, ErrTrailing, ShapeString(info.Shape), info.Dtype, need, have)
	}
	return info, dt, raw, nil
}

// parseHeader checks the preamble and parses the header dictionary. It returns the offset of
// the data.
func parseHeader(name string, raw []byte) (Info, int, error) {
	if len(raw) < 6 || !bytes.Equal(raw[:6], snpy.Magic[:]) {
		return Info{}, 0, fmt.Errorf("npy: %s: %w", name, ErrBadMagic)
	}
	if len(raw) < 10 {
		return Info{}, 0, fmt.Errorf("npy: %s: %w: file ends inside the preamble (%d bytes)", name, ErrTruncated, len(raw))
	}
	major := raw[6]
	var hlen, off int
	switch major {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(raw[8:10])), 10
	case 2:
		if len(raw) < 12 {
			return Info{}, 0, fmt.Errorf("npy: %s: %w: file ends inside the preamble (%d bytes)", name, ErrTruncated, len(raw))
		}
		h := binary.LittleEndian.Uint32(raw[8:12])
		if h > 1<<24 {
			return Info{}, 0, fmt.Errorf("npy: %s: %w: header length %d is implausible", name, ErrBadHeader, h)
		}
		hlen, off = int(h), 12
	default:
		return Info{}, 0, fmt.Errorf("npy: %s: %w: unsupported format version %d.%d", name, ErrBadHeader, major, raw[7])
	}
	if len(raw) < off+hlen {
		return Info{}, 0, fmt.Errorf("npy: %s: %w: header of %d bytes, file has only %d after the preamble", name, ErrTruncated, hlen, len(raw)-off)
	}
	hdr := raw[off : off+hlen]
	if hlen == 0 || hdr[hlen-1] != '\n' {
		return Info{}, 0, fmt.Errorf("npy: %s: %w: header not terminated by a newline", name, ErrBadHeader)
	}
	info, err := parseDict(string(hdr[:hlen-1]))
	if err != nil {
		return Info{}, 0, fmt.Errorf("npy: %s: %w: %v", name, ErrBadHeader, err)
	}
	return info, off + hlen, nil
}

// parseDict parses the header dictionary strictly (numpy writes exactly the three keys
// descr, fortran_order, shape). Object, structured and string dtypes come back as an
// unsupported descr. npyio parses the same dictionary again when decoding; checking here
// keeps its lenient parser from misreading corrupt headers.
func parseDict(s string) (Info, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return Info{}, fmt.Errorf("header %q is not a dict", s)
	}
	var info Info
	var haveDescr, haveOrder, haveShape bool
	body := s[1 : len(s)-1]
	for body = strings.TrimSpace(body); body != ""; body = strings.TrimSpace(body) {
		key, rest, ok := cutQuoted(body)
		if !ok {
			return Info{}, fmt.Errorf("bad key in header %q", s)
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, ":") {
			return Info{}, fmt.Errorf("missing ':' after key %q", key)
		}
		rest = strings.TrimSpace(rest[1:])
		switch key {
		case "descr":
			if strings.HasPrefix(rest, "[") {
				return Info{}, fmt.Errorf("structured dtype not supported")
			}
			v, r, ok := cutQuoted(rest)
			if !ok {
				return Info{}, fmt.Errorf("bad descr in header %q", s)
			}
			info.Dtype, rest, haveDescr = v, r, true
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				info.Fortran, rest = false, rest[5:]
			case strings.HasPrefix(rest, "True"):
				info.Fortran, rest = true, rest[4:]
			default:
				return Info{}, fmt.Errorf("bad fortran_order in header %q", s)
			}
			haveOrder = true
		case "shape":
			end := strings.IndexByte(rest, ')')
			if !strings.HasPrefix(rest, "(") || end < 0 {
				return Info{}, fmt.Errorf("bad shape in header %q", s)
			}
			shape, err := parseShape(rest[1:end])
			if err != nil {
				return Info{}, err
			}
			info.Shape, rest, haveShape = shape, rest[end+1:], true
		default:
			return Info{}, fmt.Errorf("unknown header key %q", key)
		}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, ",") {
			rest = rest[1:]
		} else if rest != "" {
			return Info{}, fmt.Errorf("junk %q in header", rest)
		}
		body = rest
	}
	if !haveDescr || !haveOrder || !haveShape {
		return Info{}, fmt.Errorf("header %q lacks descr, fortran_order or shape", s)
	}
	return info, nil
}

func cutQuoted(s string) (val, rest string, ok bool) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", false
	}
	return s[1 : 1+end], s[2+end:], true
}

func parseShape(s string) ([]int, error) {
	var shape []int
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(tok), "L"))
		if tok == "" {
			continue
		}
		d, err := strconv.Atoi(tok)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad shape entry %q", tok)
		}
		shape = append(shape, d)
	}
	return shape, nil
}

// maxElems bounds the element count of a header (guards the size arithmetic).
const maxElems = 1 << 40

func elems(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d != 0 && n > maxElems/d {
			return 0, fmt.Errorf("shape %s too large", ShapeString(shape))
		}
		n *= d
	}
	return n, nil
}

func shapeMatches(got, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if want[i] >= 0 && got[i] != want[i] {
			return false
		}
	}
	return true
}

// ShapeString formats a shape the way numpy prints it: (), (3,), (3, 8).
func ShapeString(shape []int) string {
	switch len(shape) {
	case 0:
		return "()"
	case 1:
		return "(" + strconv.Itoa(shape[0]) + ",)"
	}
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// unravel returns the multi-index of flat C-order position i.
func unravel(i int, shape []int) []int {
	idx := make([]int, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		if shape[k] > 0 {
			idx[k] = i % shape[k]
			i /= shape[k]
		}
	}
	return idx
}

// toCOrder reorders Fortran-order (column-major) data into C order.
func toCOrder[T any](src []T, shape []int) []T {
	if len(shape) < 2 {
		return src
	}
	dst := make([]T, len(src))
	for i := range dst {
		idx := unravel(i, shape) // C-order index of destination i
		// Fortran offset: first axis varies fastest.
		off, stride := 0, 1
		for k := range shape {
			off += idx[k] * stride
			stride *= shape[k]
		}
		dst[i] = src[off]
	}
	return dst
}

// Elem is the set of element types Write accepts.
type Elem interface {
	float32 | float64 | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64
}

// Write atomically writes data (C order) with the given shape to path as a little-endian
// .npy file. With no shape, a 1-D array of len(data) is written. The product of shape must
// equal len(data). (uint64 data is written as <u8, which ReadInt64 does not accept.)
func Write[T Elem](path string, data []T, shape ...int) error {
	var buf bytes.Buffer
	if err := Encode(&buf, data, shape...); err != nil {
		return fmt.Errorf("npy: %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, buf.Bytes()); err != nil {
		return fmt.Errorf("npy: write %s: %w", path, err)
	}
	return nil
}

// Encode writes data as a .npy file to w; see Write.
func Encode[T Elem](w io.Writer, data []T, shape ...int) error {
	if shape == nil {
		shape = []int{len(data)}
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("%w: negative dimension in shape %v", ErrInvalidArgs, shape)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("%w: shape %s holds %d values, data has %d", ErrInvalidArgs, ShapeString(shape), n, len(data))
	}
	descr := descrOf[T]()
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, ShapeString(shape))
	// Pad with spaces so that preamble+header is a multiple of 64 bytes, ending in '\n'.
	major, pre := byte(1), 10
	if len(dict)+1+pre+64 > math.MaxUint16 {
		major, pre = 2, 12
	}
	total := (pre + len(dict) + 1 + 63) / 64 * 64
	hdr := dict + strings.Repeat(" ", total-pre-len(dict)-1) + "\n"
	var head bytes.Buffer
	head.Write(snpy.Magic[:])
	head.WriteByte(major)
	head.WriteByte(0)
	if major == 1 {
		binary.Write(&head, binary.LittleEndian, uint16(len(hdr)))
	} else {
		binary.Write(&head, binary.LittleEndian, uint32(len(hdr)))
	}
	head.WriteString(hdr)
	if _, err := w.Write(head.Bytes()); err != nil {
		return err
	}
	return binary.Write(w, binary.LittleEndian, data)
}

func descrOf[T Elem]() string {
	var z T
	switch any(z).(type) {
	case float32:
		return "<f4"
	case float64:
		return "<f8"
	case int8:
		return "|i1"
	case int16:
		return "<i2"
	case int32:
		return "<i4"
	case int64:
		return "<i8"
	case uint8:
		return "|u1"
	case uint16:
		return "<u2"
	case uint32:
		return "<u4"
	case uint64:
		return "<u8"
	}
	return ""
}
