package table

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Layout of a Parquet file: "PAR1", column chunks, the FileMetaData (Thrift compact
// protocol), its length (uint32) and "PAR1" ("PARE" when the footer is encrypted).
const (
	parquetHead = 4 // "PAR1"
	parquetTail = 8 // footer length and "PAR1"
)

// Field ids of the Thrift structures of the Parquet format (parquet.thrift) read here.
const (
	metaSchema          = 2 // FileMetaData.schema: list<SchemaElement>
	metaRowGroups       = 4 // FileMetaData.row_groups: list<RowGroup>
	metaKeyValues       = 5 // FileMetaData.key_value_metadata: list<KeyValue>
	metaColumnOrders    = 7 // FileMetaData.column_orders: list<ColumnOrder>
	elementNumChildren  = 5 // SchemaElement.num_children: i32
	kvKey               = 1 // KeyValue.key: string
	kvValue             = 2 // KeyValue.value: string
	arrowSchemaKey      = "ARROW:schema"
	parquetEncryptMagic = "PARE"
)

// checkParquetFile validates the magic bytes, the footer length and the FileMetaData of the
// Parquet file r of size bytes.
func checkParquetFile(r io.ReaderAt, size int64) error {
	if size < parquetHead+parquetTail {
		return fmt.Errorf("file of %d bytes is too small for a Parquet file", size)
	}
	head, err := readAt(r, 0, parquetHead)
	if err != nil {
		return err
	}
	tail, err := readAt(r, size-parquetTail, parquetTail)
	if err != nil {
		return err
	}
	if !bytes.Equal(head, parquetMagic) {
		return fmt.Errorf("no %s magic at the start", parquetMagic)
	}
	switch {
	case string(tail[4:]) == parquetEncryptMagic:
		return errors.New("encrypted footers are not supported")
	case !bytes.Equal(tail[4:], parquetMagic):
		return fmt.Errorf("no %s magic at the end (truncated file?)", parquetMagic)
	}
	n := int64(binary.LittleEndian.Uint32(tail))
	if room := size - parquetHead - parquetTail; n == 0 || n > room {
		return fmt.Errorf("footer length %d is not within the %d bytes between the magic numbers", n, room)
	}
	footer, err := readAt(r, size-parquetTail-n, n)
	if err != nil {
		return err
	}
	return checkFileMetaData(footer)
}

// checkFileMetaData walks the Thrift FileMetaData in footer: every length is bounded by the
// bytes left, structures nest at most maxNesting deep, the schema elements form one tree at
// most maxNesting deep, and an Arrow schema stored under "ARROW:schema" is itself valid.
func checkFileMetaData(footer []byte) error {
	r := &thriftReader{b: footer}
	tree := &schemaTree{}
	err := r.fields(0, func(id int16, typ byte) (bool, error) {
		switch {
		case id == metaSchema && typ == ctList:
			return true, wrapIf("schema", r.schemaElements(tree))
		case id == metaKeyValues && typ == ctList:
			return true, wrapIf("key-value metadata", r.keyValues())
		}
		return true, wrapIf(metaFieldName(id), r.skip(typ, 1, false))
	})
	if err != nil {
		return err
	}
	return tree.complete()
}

// metaFieldName names field id of FileMetaData in errors.
func metaFieldName(id int16) string {
	switch id {
	case metaRowGroups:
		return "row groups"
	case metaColumnOrders:
		return "column orders"
	}
	return fmt.Sprintf("field %d", id)
}

// schemaElements reads the list of SchemaElements into tree.
func (r *thriftReader) schemaElements(tree *schemaTree) error {
	n, err := r.structListHeader()
	if err != nil {
		return err
	}
	for i := range n {
		children := int64(0)
		err := r.fields(2, func(id int16, typ byte) (bool, error) {
			if id != elementNumChildren || typ != ctI32 {
				return false, nil
			}
			var err error
			children, err = r.zigzag()
			return true, err
		})
		if err == nil {
			err = tree.add(children)
		}
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}

// schemaTree checks that schema elements, listed depth first with their number of
// children, form one tree of at most maxNesting levels (arrow-go recurses on it).
type schemaTree struct {
	open     []int64 // children still expected by each open group, root first
	elements int64
}

func (t *schemaTree) add(children int64) error {
	if children < 0 || children > int64(1)<<31 {
		return fmt.Errorf("invalid num_children %d", children)
	}
	if t.elements > 0 {
		if len(t.open) == 0 {
			return errors.New("element outside the tree of the root element")
		}
		t.open[len(t.open)-1]--
	}
	t.elements++
	if children > 0 {
		if len(t.open) >= maxNesting {
			return fmt.Errorf("elements nest deeper than %d", maxNesting)
		}
		t.open = append(t.open, children)
	}
	for len(t.open) > 0 && t.open[len(t.open)-1] == 0 {
		t.open = t.open[:len(t.open)-1]
	}
	return nil
}

func (t *schemaTree) complete() error {
	switch {
	case t.elements == 0:
		return errors.New("no schema")
	case len(t.open) > 0:
		return fmt.Errorf("schema: the list ends after %d elements while a group still expects %d children", t.elements, t.open[len(t.open)-1])
	}
	return nil
}

// keyValues reads the key-value metadata and checks the Arrow schema stored there by pqarrow.
func (r *thriftReader) keyValues() error {
	n, err := r.structListHeader()
	if err != nil {
		return err
	}
	for i := range n {
		var key, value []byte
		err := r.fields(2, func(id int16, typ byte) (bool, error) {
			var err error
			switch {
			case id == kvKey && typ == ctBinary:
				key, err = r.binary()
			case id == kvValue && typ == ctBinary:
				value, err = r.binary()
			default:
				return false, nil
			}
			return true, err
		})
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		if string(key) == arrowSchemaKey {
			if err := checkArrowSchema(value); err != nil {
				return fmt.Errorf("%s: %w", arrowSchemaKey, err)
			}
		}
	}
	return nil
}

// checkArrowSchema decodes the base64 Arrow schema the way pqarrow does and validates it.
func checkArrowSchema(value []byte) error {
	var (
		msg []byte
		err error
	)
	if len(value)%4 == 0 {
		msg, err = base64.StdEncoding.AppendDecode(nil, value)
	}
	if len(msg) == 0 || err != nil {
		msg, err = base64.RawStdEncoding.AppendDecode(nil, value)
	}
	if err != nil {
		return fmt.Errorf("base64: %w", err)
	}
	return checkSchemaMessage(msg)
}
