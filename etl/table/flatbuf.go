package table

import (
	"encoding/binary"
	"fmt"
)

// fbuf is a flatbuffer whose every access is bounds-checked: the generated accessors of
// arrow-go index the buffer without checks (and wrap 32-bit offsets around, which is how a
// forged footer builds cycles), so the footers are walked with fbuf before arrow-go sees them.
//
// Offsets are followed in 64-bit arithmetic and must land inside the buffer; as flatbuffer
// offsets are unsigned, every reference then points forward and no cycle is possible.
type fbuf []byte

// fbTable is a flatbuffer table whose vtable and inline part were checked to lie in the buffer.
type fbTable struct {
	pos  uint64 // start of the table (its signed offset to the vtable)
	vt   uint64 // start of the vtable
	vlen uint64 // vtable size in bytes (4 + 2 per field slot)
	size uint64 // inline size of the table in bytes
}

func (b fbuf) u16(at uint64) (uint64, error) {
	if at > uint64(len(b)) || uint64(len(b))-at < 2 {
		return 0, fmt.Errorf("2 bytes at offset %d lie outside the %d-byte buffer", at, len(b))
	}
	return uint64(binary.LittleEndian.Uint16(b[at:])), nil
}

func (b fbuf) u32(at uint64) (uint64, error) {
	if at > uint64(len(b)) || uint64(len(b))-at < 4 {
		return 0, fmt.Errorf("4 bytes at offset %d lie outside the %d-byte buffer", at, len(b))
	}
	return uint64(binary.LittleEndian.Uint32(b[at:])), nil
}

// deref follows the unsigned offset stored at at.
func (b fbuf) deref(at uint64) (uint64, error) {
	off, err := b.u32(at)
	if err != nil {
		return 0, err
	}
	if at+off >= uint64(len(b)) {
		return 0, fmt.Errorf("offset %d at %d points outside the %d-byte buffer", off, at, len(b))
	}
	return at + off, nil
}

// root returns the root table of the buffer.
func (b fbuf) root() (fbTable, error) {
	pos, err := b.deref(0)
	if err != nil {
		return fbTable{}, fmt.Errorf("root: %w", err)
	}
	return b.table(pos)
}

// table checks the table at pos: its vtable and inline part lie in the buffer. The fields
// are checked when read (slot): checking every vtable entry on each visit would cost up to
// 32k steps per table. A scalar field that arrow-go reads and fbuf does not can at worst
// lie outside the buffer, and the resulting index panic is turned into an error by catch.
func (b fbuf) table(pos uint64) (fbTable, error) {
	soff, err := b.u32(pos)
	if err != nil {
		return fbTable{}, fmt.Errorf("table: %w", err)
	}
	t := fbTable{pos: pos, vt: uint64(int64(pos) - int64(int32(uint32(soff))))}
	if int64(t.vt) < 0 {
		return fbTable{}, fmt.Errorf("table at %d: vtable offset %d points before the buffer", pos, int32(uint32(soff)))
	}
	if t.vlen, err = b.u16(t.vt); err != nil {
		return fbTable{}, fmt.Errorf("table at %d: vtable: %w", pos, err)
	}
	if t.size, err = b.u16(t.vt + 2); err != nil {
		return fbTable{}, fmt.Errorf("table at %d: vtable: %w", pos, err)
	}
	if err := b.checkTable(t); err != nil {
		return fbTable{}, fmt.Errorf("table at %d: %w", pos, err)
	}
	return t, nil
}

func (b fbuf) checkTable(t fbTable) error {
	n := uint64(len(b))
	switch {
	case t.vlen < 4 || t.vlen%2 != 0:
		return fmt.Errorf("vtable size %d is not 4 plus 2 per field", t.vlen)
	case t.vt+t.vlen > n:
		return fmt.Errorf("vtable of %d bytes at %d exceeds the %d-byte buffer", t.vlen, t.vt, n)
	case t.size < 4 || t.pos+t.size > n:
		return fmt.Errorf("inline size %d exceeds the %d-byte buffer", t.size, n)
	}
	return nil
}

// slot returns the position of field i of t, or ok = false when the field is absent. The
// field's first byte lies inside the table; size is the bytes the field occupies.
func (b fbuf) slot(t fbTable, i int, size uint64) (pos uint64, ok bool, err error) {
	at := 4 + 2*uint64(i)
	if at >= t.vlen {
		return 0, false, nil
	}
	off, _ := b.u16(t.vt + at) // inside the vtable, checked by table
	if off == 0 {
		return 0, false, nil
	}
	if off < 4 || off+size > t.size {
		return 0, false, fmt.Errorf("field %d of the table at %d: %d bytes at offset %d exceed its %d bytes", i, t.pos, size, off, t.size)
	}
	return t.pos + off, true, nil
}

// byteField returns the one-byte field i of t (0 when absent).
func (b fbuf) byteField(t fbTable, i int) (byte, error) {
	pos, ok, err := b.slot(t, i, 1)
	if !ok || err != nil {
		return 0, err
	}
	return b[pos], nil
}

// int64Field returns the eight-byte field i of t (0 when absent).
func (b fbuf) int64Field(t fbTable, i int) (int64, error) {
	pos, ok, err := b.slot(t, i, 8)
	if !ok || err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(b[pos:])), nil
}

// tableField returns the table that field i of t refers to.
func (b fbuf) tableField(t fbTable, i int) (sub fbTable, ok bool, err error) {
	pos, ok, err := b.slot(t, i, 4)
	if !ok || err != nil {
		return fbTable{}, false, err
	}
	at, err := b.deref(pos)
	if err != nil {
		return fbTable{}, false, err
	}
	sub, err = b.table(at)
	return sub, err == nil, err
}

// fbVector is a vector whose n elements of size bytes each lie in the buffer from start on.
type fbVector struct {
	start, n, size uint64
}

// vectorField returns the vector (of elements of elemSize bytes) that field i of t refers to;
// an absent field is an empty vector.
func (b fbuf) vectorField(t fbTable, i int, elemSize uint64) (fbVector, error) {
	pos, ok, err := b.slot(t, i, 4)
	if !ok || err != nil {
		return fbVector{size: elemSize}, err
	}
	return b.vector(pos, elemSize)
}

// vector checks the vector referred to by the offset at pos.
func (b fbuf) vector(pos, elemSize uint64) (fbVector, error) {
	at, err := b.deref(pos)
	if err != nil {
		return fbVector{}, err
	}
	n, err := b.u32(at)
	if err != nil {
		return fbVector{}, fmt.Errorf("vector length: %w", err)
	}
	v := fbVector{start: at + 4, n: n, size: elemSize}
	if left := uint64(len(b)) - v.start; n > left/elemSize {
		return fbVector{}, fmt.Errorf("vector at %d of %d elements of %d bytes exceeds the %d bytes left in the buffer", at, n, elemSize, left)
	}
	return v, nil
}

// elem returns the position of element j of v.
func (v fbVector) elem(j uint64) uint64 { return v.start + j*v.size }

// tableElem returns the table that element j of a vector of tables refers to.
func (b fbuf) tableElem(v fbVector, j uint64) (fbTable, error) {
	at, err := b.deref(v.elem(j))
	if err != nil {
		return fbTable{}, fmt.Errorf("element %d: %w", j, err)
	}
	t, err := b.table(at)
	if err != nil {
		return fbTable{}, fmt.Errorf("element %d: %w", j, err)
	}
	return t, nil
}

// stringField returns the length of the string that field i of t refers to (a string is a
// vector of bytes).
func (b fbuf) stringField(t fbTable, i int) (uint64, error) {
	v, err := b.vectorField(t, i, 1)
	return v.n, err
}
