package table

import (
	"errors"
	"fmt"
)

// Types of the Thrift compact protocol (as in field headers; list elements use the same codes).
const (
	ctStop   = 0
	ctTrue   = 1
	ctFalse  = 2
	ctByte   = 3
	ctI16    = 4
	ctI32    = 5
	ctI64    = 6
	ctDouble = 7
	ctBinary = 8
	ctList   = 9
	ctSet    = 10
	ctMap    = 11
	ctStruct = 12
)

// thriftReader reads the Thrift compact protocol from a byte slice, checking every length
// against the bytes left: each element of a list or map takes at least one byte, so a
// forged size is caught before anything is allocated for it.
type thriftReader struct {
	b   []byte
	pos int
}

func (r *thriftReader) left() int { return len(r.b) - r.pos }

var errThriftEOF = errors.New("unexpected end of the footer")

func (r *thriftReader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, errThriftEOF
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *thriftReader) varint() (uint64, error) {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("varint at offset %d is longer than 10 bytes", r.pos)
}

// zigzag reads a zigzag-encoded signed varint (i16, i32, i64).
func (r *thriftReader) zigzag() (int64, error) {
	v, err := r.varint()
	return int64(v>>1) ^ -int64(v&1), err
}

func (r *thriftReader) skipBytes(n uint64) error {
	if n > uint64(r.left()) {
		return fmt.Errorf("%d bytes at offset %d exceed the %d footer bytes left", n, r.pos, r.left())
	}
	r.pos += int(n)
	return nil
}

// binary reads a length-prefixed byte string (it aliases the footer).
func (r *thriftReader) binary() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	start := r.pos
	if err := r.skipBytes(n); err != nil {
		return nil, fmt.Errorf("string: %w", err)
	}
	return r.b[start:r.pos], nil
}

// listHeader reads the header of a list or set: element type and count.
func (r *thriftReader) listHeader() (elem byte, n uint64, err error) {
	start := r.pos
	h, err := r.byte()
	if err != nil {
		return 0, 0, err
	}
	elem, n = h&0x0f, uint64(h>>4)
	if n == 15 {
		if n, err = r.varint(); err != nil {
			return 0, 0, err
		}
	}
	minSize := uint64(1)
	if elem == ctDouble {
		minSize = 8
	}
	if n > uint64(r.left())/minSize {
		return 0, 0, fmt.Errorf("list of %d elements at offset %d exceeds the %d footer bytes left", n, start, r.left())
	}
	return elem, n, nil
}

// structListHeader reads the header of a list whose elements must be structs and returns its
// length.
func (r *thriftReader) structListHeader() (uint64, error) {
	elem, n, err := r.listHeader()
	if err != nil {
		return 0, err
	}
	if elem != ctStruct && n > 0 {
		return 0, fmt.Errorf("list of type %d, not of structs", elem)
	}
	return n, nil
}

// skip skips a value of type typ at nesting depth; inList tells a list element (a boolean
// there takes a byte) from a struct field (whose type carries the boolean).
func (r *thriftReader) skip(typ byte, depth int, inList bool) error {
	if depth > maxNesting {
		return fmt.Errorf("structures nest deeper than %d", maxNesting)
	}
	switch typ {
	case ctTrue, ctFalse:
		if inList {
			return r.skipBytes(1)
		}
		return nil
	case ctByte:
		return r.skipBytes(1)
	case ctDouble:
		return r.skipBytes(8)
	case ctI16, ctI32, ctI64:
		_, err := r.varint()
		return err
	case ctBinary:
		_, err := r.binary()
		return err
	case ctList, ctSet:
		return r.skipList(depth)
	case ctMap:
		return r.skipMap(depth)
	case ctStruct:
		return r.fields(depth, nil)
	}
	return fmt.Errorf("unknown Thrift type %d at offset %d", typ, r.pos)
}

func (r *thriftReader) skipList(depth int) error {
	elem, n, err := r.listHeader()
	if err != nil {
		return err
	}
	return r.each(n, func() error { return r.skip(elem, depth+1, true) })
}

func (r *thriftReader) skipMap(depth int) error {
	start := r.pos
	n, err := r.varint()
	if err != nil || n == 0 {
		return err
	}
	types, err := r.byte()
	if err != nil {
		return err
	}
	if n > uint64(r.left())/2 {
		return fmt.Errorf("map of %d entries at offset %d exceeds the %d footer bytes left", n, start, r.left())
	}
	return r.each(n, func() error {
		if err := r.skip(types>>4, depth+1, true); err != nil {
			return err
		}
		return r.skip(types&0x0f, depth+1, true)
	})
}

// each calls fn n times, stopping at the first error.
func (r *thriftReader) each(n uint64, fn func() error) error {
	for range n {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

// fieldFunc reads field id of type typ of a struct itself and reports true, or reports false
// to have it skipped. Its errors are returned unwrapped: it names what it reads.
type fieldFunc func(id int16, typ byte) (bool, error)

// fields reads the fields of a struct at nesting depth up to its stop byte, handing each to
// fn (nil: skip all).
func (r *thriftReader) fields(depth int, fn fieldFunc) error {
	if depth > maxNesting {
		return fmt.Errorf("structures nest deeper than %d", maxNesting)
	}
	var id int16
	for {
		h, err := r.byte()
		if err != nil {
			return err
		}
		typ := h & 0x0f
		if typ == ctStop {
			return nil
		}
		if id, err = r.fieldID(h, id); err != nil {
			return err
		}
		done := false
		if fn != nil {
			if done, err = fn(id, typ); err != nil {
				return err
			}
		}
		if !done {
			if err := r.skip(typ, depth+1, false); err != nil {
				return err
			}
		}
	}
}

// fieldID decodes the id of the field whose header byte is h, following field last.
func (r *thriftReader) fieldID(h byte, last int16) (int16, error) {
	if delta := int16(h >> 4); delta != 0 {
		return last + delta, nil
	}
	v, err := r.zigzag()
	if err != nil {
		return 0, err
	}
	if v != int64(int16(v)) {
		return 0, fmt.Errorf("field id %d out of range", v)
	}
	return int16(v), nil
}
