package table

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Layout of an Arrow IPC file: "ARROW1", 2 bytes of padding, the stream of messages (schema,
// dictionaries, record batches), the Footer flatbuffer, its length (int32) and "ARROW1".
const (
	arrowHead = 8  // "ARROW1" and padding
	arrowTail = 10 // footer length and "ARROW1"
)

// Slots of the flatbuffer tables of the Arrow format (format/Schema.fbs, File.fbs,
// Message.fbs), and the sizes of the Block struct and of the union members read here.
const (
	footerSchema        = 1
	footerDictionaries  = 2
	footerRecordBatches = 3
	footerMetadata      = 4
	blockSize           = 24 // offset int64, metaDataLength int32 + padding, bodyLength int64

	schemaFields   = 1
	schemaMetadata = 2
	schemaFeatures = 3

	fieldName       = 0
	fieldTypeType   = 2
	fieldType       = 3
	fieldDictionary = 4
	fieldChildren   = 5
	fieldMetadata   = 6

	dictionaryIndexType = 1
	keyValueKey         = 0
	keyValueValue       = 1
	timestampTimezone   = 1
	unionTypeIDs        = 1

	typeTimestamp = 10
	typeUnion     = 14

	messageHeaderType = 1
	messageHeader     = 2
	messageBodyLength = 3
	headerSchema      = 1 // MessageHeader union: Schema
)

// arrowBlocks are the messages that the footer of an Arrow IPC file lists, in footer order.
type arrowBlocks struct {
	dicts, batches []fileBlock
}

// checkArrowFile validates the magic bytes, the footer length and the Footer flatbuffer of
// the Arrow IPC file r of size bytes, and returns the blocks the footer lists.
func checkArrowFile(r io.ReaderAt, size int64) (arrowBlocks, error) {
	if size < arrowHead+arrowTail+1 {
		return arrowBlocks{}, fmt.Errorf("file of %d bytes is too small for an Arrow IPC file", size)
	}
	head, err := readAt(r, 0, arrowHead)
	if err != nil {
		return arrowBlocks{}, err
	}
	tail, err := readAt(r, size-arrowTail, arrowTail)
	if err != nil {
		return arrowBlocks{}, err
	}
	if !bytes.HasPrefix(head, arrowMagic) {
		return arrowBlocks{}, fmt.Errorf("no %s magic at the start", arrowMagic)
	}
	if !bytes.Equal(tail[4:], arrowMagic) {
		return arrowBlocks{}, fmt.Errorf("no %s magic at the end (truncated file?)", arrowMagic)
	}
	n := int64(binary.LittleEndian.Uint32(tail))
	if room := size - arrowHead - arrowTail; n == 0 || n > room {
		return arrowBlocks{}, fmt.Errorf("footer length %d is not within the %d bytes between header and trailer", n, room)
	}
	dataEnd := size - arrowTail - n
	footer, err := readAt(r, dataEnd, n)
	if err != nil {
		return arrowBlocks{}, err
	}
	return checkArrowFooter(fbuf(footer), dataEnd)
}

// checkArrowFooter walks the Footer flatbuffer b of a file whose messages end at dataEnd.
func checkArrowFooter(b fbuf, dataEnd int64) (arrowBlocks, error) {
	footer, err := b.root()
	if err != nil {
		return arrowBlocks{}, err
	}
	schema, ok, err := b.tableField(footer, footerSchema)
	if err != nil {
		return arrowBlocks{}, fmt.Errorf("schema: %w", err)
	}
	if !ok {
		return arrowBlocks{}, errors.New("no schema")
	}
	w := newSchemaWalker(b)
	if err := w.schema(schema); err != nil {
		return arrowBlocks{}, err
	}
	if err := w.keyValues(footer, footerMetadata); err != nil {
		return arrowBlocks{}, fmt.Errorf("footer metadata: %w", err)
	}
	return checkBlocks(b, footer, dataEnd)
}

// fileBlock is one message listed in the footer: meta bytes of framed Message flatbuffer
// from off on, then its body, up to end.
type fileBlock struct {
	what           string
	off, meta, end int64
}

// checkBlocks checks that the dictionary and record batch blocks of the footer lie in the
// message part of the file, [arrowHead, dataEnd), and do not overlap (so that reading every
// block reads each byte of the file at most once).
func checkBlocks(b fbuf, footer fbTable, dataEnd int64) (arrowBlocks, error) {
	var blocks arrowBlocks
	for _, list := range []struct {
		what string
		slot int
		dst  *[]fileBlock
	}{{"dictionary", footerDictionaries, &blocks.dicts}, {"record batch", footerRecordBatches, &blocks.batches}} {
		v, err := b.vectorField(footer, list.slot, blockSize)
		if err != nil {
			return arrowBlocks{}, fmt.Errorf("%s blocks: %w", list.what, err)
		}
		for j := range v.n {
			blk, err := readBlock(b, v.elem(j), dataEnd)
			if err != nil {
				return arrowBlocks{}, fmt.Errorf("%s %d: %w", list.what, j, err)
			}
			blk.what = fmt.Sprintf("%s %d", list.what, j)
			*list.dst = append(*list.dst, blk)
		}
	}
	if err := checkOverlap(slices.Concat(blocks.dicts, blocks.batches)); err != nil {
		return arrowBlocks{}, err
	}
	return blocks, nil
}

// checkOverlap reports two blocks that share bytes (it sorts blocks).
func checkOverlap(blocks []fileBlock) error {
	slices.SortFunc(blocks, func(x, y fileBlock) int { return cmp.Compare(x.off, y.off) })
	for i := 1; i < len(blocks); i++ {
		if blocks[i].off < blocks[i-1].end {
			return fmt.Errorf("%s (bytes %d–%d) overlaps %s (bytes %d–%d)", blocks[i].what, blocks[i].off,
				blocks[i].end, blocks[i-1].what, blocks[i-1].off, blocks[i-1].end)
		}
	}
	return nil
}

// readBlock reads the Block struct at pos and checks that it lies in [arrowHead, dataEnd).
func readBlock(b fbuf, pos uint64, dataEnd int64) (fileBlock, error) {
	off := int64(binary.LittleEndian.Uint64(b[pos:]))
	meta := int64(int32(binary.LittleEndian.Uint32(b[pos+8:])))
	body := int64(binary.LittleEndian.Uint64(b[pos+16:]))
	if off < arrowHead || off > dataEnd || meta < 0 || meta > dataEnd-off || body < 0 || body > dataEnd-off-meta {
		return fileBlock{}, fmt.Errorf("block at offset %d with %d metadata and %d body bytes lies outside the messages (bytes %d–%d)",
			off, meta, body, arrowHead, dataEnd)
	}
	return fileBlock{off: off, meta: meta, end: off + meta + body}, nil
}

// schemaWalker walks a Schema table, bounding its nesting and its expansion: every field and
// key-value pair spends an item and its strings spend bytes from budgets set by the size of
// the buffer, so that a field tree whose vectors share (or, through wrapped offsets, cycle
// back to) tables cannot make arrow-go build more than the buffer can hold.
type schemaWalker struct {
	b            fbuf
	items, bytes uint64
}

func newSchemaWalker(b fbuf) *schemaWalker {
	// A field or key-value pair is a table (≥ 4 bytes) referred to by a vector element (4 bytes).
	return &schemaWalker{b: b, items: uint64(len(b)) / 8, bytes: uint64(len(b))}
}

func (w *schemaWalker) spend(items, bytes uint64) error {
	if items > w.items || bytes > w.bytes {
		return fmt.Errorf("the schema expands to more fields, key-values or text than its %d bytes hold (shared or cyclic references)", len(w.b))
	}
	w.items -= items
	w.bytes -= bytes
	return nil
}

// schema walks a Schema table: its fields, key-value metadata and features.
func (w *schemaWalker) schema(t fbTable) error {
	fields, err := w.b.vectorField(t, schemaFields, 4)
	if err != nil {
		return fmt.Errorf("schema fields: %w", err)
	}
	for j := range fields.n {
		if err := w.fieldElem(fields, j, 1); err != nil {
			return fmt.Errorf("schema field %d: %w", j, err)
		}
	}
	if err := w.keyValues(t, schemaMetadata); err != nil {
		return fmt.Errorf("schema metadata: %w", err)
	}
	if _, err := w.b.vectorField(t, schemaFeatures, 8); err != nil {
		return fmt.Errorf("schema features: %w", err)
	}
	return nil
}

// fieldElem walks the Field that element j of v refers to, at nesting depth.
func (w *schemaWalker) fieldElem(v fbVector, j uint64, depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("fields nest deeper than %d", maxNesting)
	}
	t, err := w.b.tableElem(v, j)
	if err != nil {
		return err
	}
	name, err := w.b.stringField(t, fieldName)
	if err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if err := w.spend(1, name); err != nil {
		return err
	}
	if err := w.fieldType(t); err != nil {
		return err
	}
	if err := w.keyValues(t, fieldMetadata); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	children, err := w.b.vectorField(t, fieldChildren, 4)
	if err != nil {
		return fmt.Errorf("children: %w", err)
	}
	for k := range children.n {
		if err := w.fieldElem(children, k, depth+1); err != nil {
			return err // not wrapped: a deep tree would repeat "child 0: " per level
		}
	}
	return nil
}

// fieldType checks the type and dictionary encoding tables of the Field t and the vectors
// and strings that arrow-go reads from them.
func (w *schemaWalker) fieldType(t fbTable) error {
	typ, err := w.b.byteField(t, fieldTypeType)
	if err != nil {
		return fmt.Errorf("type: %w", err)
	}
	tt, ok, err := w.b.tableField(t, fieldType)
	if err != nil {
		return fmt.Errorf("type: %w", err)
	}
	if ok {
		if err := w.typeTable(typ, tt); err != nil {
			return fmt.Errorf("type: %w", err)
		}
	}
	dict, ok, err := w.b.tableField(t, fieldDictionary)
	if err != nil || !ok {
		return wrapIf("dictionary", err)
	}
	_, _, err = w.b.tableField(dict, dictionaryIndexType)
	return wrapIf("dictionary index type", err)
}

func (w *schemaWalker) typeTable(typ byte, t fbTable) error {
	switch typ {
	case typeTimestamp:
		n, err := w.b.stringField(t, timestampTimezone)
		if err != nil {
			return fmt.Errorf("timezone: %w", err)
		}
		return w.spend(0, n)
	case typeUnion:
		ids, err := w.b.vectorField(t, unionTypeIDs, 4)
		if err != nil {
			return fmt.Errorf("union type ids: %w", err)
		}
		return w.spend(ids.n, 0)
	}
	return nil
}

// keyValues walks the vector of KeyValue tables in slot i of t.
func (w *schemaWalker) keyValues(t fbTable, i int) error {
	v, err := w.b.vectorField(t, i, 4)
	if err != nil {
		return err
	}
	for j := range v.n {
		kv, err := w.b.tableElem(v, j)
		if err != nil {
			return err
		}
		k, err := w.b.stringField(kv, keyValueKey)
		if err != nil {
			return fmt.Errorf("key %d: %w", j, err)
		}
		val, err := w.b.stringField(kv, keyValueValue)
		if err != nil {
			return fmt.Errorf("value %d: %w", j, err)
		}
		if err := w.spend(1, k+val); err != nil {
			return err
		}
	}
	return nil
}

// checkSchemaMessage validates an encapsulated IPC Schema message, as pqarrow stores the
// Arrow schema in a Parquet footer (key "ARROW:schema", base64): optional continuation
// marker, metadata length, Message flatbuffer, body.
func checkSchemaMessage(msg []byte) error {
	n, rest, err := messageLength(msg)
	if err != nil {
		return err
	}
	b := fbuf(rest[:n])
	m, err := b.root()
	if err != nil {
		return err
	}
	typ, err := b.byteField(m, messageHeaderType)
	if err != nil {
		return fmt.Errorf("message header type: %w", err)
	}
	if typ != headerSchema {
		return fmt.Errorf("not a schema message (header type %d)", typ)
	}
	body, err := b.int64Field(m, messageBodyLength)
	if err != nil {
		return fmt.Errorf("message body length: %w", err)
	}
	if left := int64(len(rest)) - int64(n); body < 0 || body > left {
		return fmt.Errorf("message body of %d bytes exceeds the %d bytes left", body, left)
	}
	schema, ok, err := b.tableField(m, messageHeader)
	if err != nil {
		return fmt.Errorf("message header: %w", err)
	}
	if !ok {
		return errors.New("no schema in the message")
	}
	return newSchemaWalker(b).schema(schema)
}

// messageLength reads the framing of an encapsulated message: the metadata length and the
// bytes from the metadata on.
func messageLength(msg []byte) (uint32, []byte, error) {
	if len(msg) < 4 {
		return 0, nil, fmt.Errorf("message of %d bytes is too short", len(msg))
	}
	n, rest := binary.LittleEndian.Uint32(msg), msg[4:]
	if n == 0xffffffff { // continuation marker, then the length
		if len(rest) < 4 {
			return 0, nil, fmt.Errorf("message of %d bytes is too short", len(msg))
		}
		n, rest = binary.LittleEndian.Uint32(rest), rest[4:]
	}
	if n < 4 || uint64(n) > uint64(len(rest)) {
		return 0, nil, fmt.Errorf("message metadata length %d is not within the %d bytes left", n, len(rest))
	}
	return n, rest, nil
}

// wrapIf wraps a non-nil err with what.
func wrapIf(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
