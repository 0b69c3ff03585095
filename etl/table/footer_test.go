package table

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
)

// nestedList returns depth nested lists of int32 (an Arrow field of it nests depth+1 deep).
func nestedList(depth int) arrow.DataType {
	var dt arrow.DataType = arrow.PrimitiveTypes.Int32
	for range depth {
		dt = arrow.ListOf(dt)
	}
	return dt
}

// structChain returns depth nested struct<a: …, b: int32> (each level has two children).
func structChain(depth int) arrow.DataType {
	var dt arrow.DataType = arrow.PrimitiveTypes.Int32
	for range depth {
		dt = arrow.StructOf(arrow.Field{Name: "a", Type: dt, Nullable: true},
			arrow.Field{Name: "b", Type: arrow.PrimitiveTypes.Int32, Nullable: true})
	}
	return dt
}

// richSchema has the Arrow types whose footer encoding the validators look into.
func richSchema() *arrow.Schema {
	md := arrow.NewMetadata([]string{"enflow.schema"}, []string{"test/v1"})
	return arrow.NewSchema([]arrow.Field{
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "Europe/Berlin"}, Nullable: true},
		{Name: "m", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "s", Type: structChain(3), Nullable: true},
		{Name: "d", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
		{Name: "deep", Type: nestedList(30), Nullable: true, Metadata: arrow.NewMetadata([]string{"k"}, []string{"v"})},
	}, &md)
}

// writeNullRows writes rows rows of nulls with schema to path.
func writeNullRows(t *testing.T, path string, schema *arrow.Schema, rows int) {
	t.Helper()
	err := WriteRecords(path, schema, func(b *array.RecordBuilder) error {
		for range rows {
			for _, fb := range b.Fields() {
				fb.AppendNull()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkPath runs checkFooter on the file at path.
func checkPath(t *testing.T, path string) error {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	format, err := sniff(path)
	if err != nil {
		format, _ = FormatOf(path)
	}
	_, err = checkFooter(path, f, format)
	return err
}

// wantErr fails unless err names path and contains want ("" wants no error).
func wantErr(t *testing.T, err error, path, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == "":
	case err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case !strings.Contains(err.Error(), want) || (path != "" && !strings.Contains(err.Error(), path)):
		t.Fatalf("error %q does not contain %q and the file name", err, want)
	}
}

// must(f())(t) returns the value of f, failing the test on its error.
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestCheckFooterAcceptsWrittenFiles(t *testing.T) {
	cfgs := make([]particles.Config, BatchRows+3) // two record batches / row groups
	for i := range cfgs {
		cfgs[i] = synthConfig(int64(i), particles.DW4)
	}
	ms := []molecule.Molecule{synthMolecule(1, 5), sparseMolecule(2, 29)}
	for _, ext := range formats {
		dir := t.TempDir()
		files := map[string]func(path string){
			"configs":   func(p string) { writeConfigs(t, p, cfgs) },
			"molecules": func(p string) { writeMolecules(t, p, ms) },
			"empty":     func(p string) { writeMolecules(t, p, nil) },
			"rich":      func(p string) { writeNullRows(t, p, richSchema(), 3) },
			"rows": func(p string) {
				w := must(NewRowWriter(p, []Col{{Name: "x", Type: Float64}, {Name: "s", Type: String}}, map[string]string{"k": "v"}))(t)
				if err := w.Append(1.5, "a"); err != nil {
					t.Fatal(err)
				}
				if err := w.Commit(); err != nil {
					t.Fatal(err)
				}
			},
		}
		for name, write := range files {
			t.Run(name+ext, func(t *testing.T) {
				path := filepath.Join(dir, name+ext)
				write(path)
				wantErr(t, checkPath(t, path), path, "")
				if _, err := Schema(path); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	t.Run("deepest.arrow", func(t *testing.T) {
		path := tempPath(t, "deepest.arrow") // fields nest exactly maxNesting deep
		writeNullRows(t, path, arrow.NewSchema([]arrow.Field{{Name: "x", Type: nestedList(maxNesting - 1), Nullable: true}}, nil), 1)
		wantErr(t, checkPath(t, path), path, "")
		if _, err := Schema(path); err != nil {
			t.Fatal(err)
		}
	})
}

// arrowFooter returns the Footer flatbuffer of the Arrow IPC file data (aliasing data).
func arrowFooter(data []byte) fbuf {
	n := int(binary.LittleEndian.Uint32(data[len(data)-arrowTail:]))
	return fbuf(data[len(data)-arrowTail-n : len(data)-arrowTail])
}

// footerVector returns vector slot i of the footer's root table (slot < 0: of its schema).
func footerVector(t *testing.T, b fbuf, slot int, elemSize uint64) (at uint64, v fbVector) {
	t.Helper()
	tbl := must(b.root())(t)
	if slot < 0 {
		tbl, _, _ = b.tableField(tbl, footerSchema)
		slot = -slot
	}
	pos, ok, err := b.slot(tbl, slot, 4)
	if !ok || err != nil {
		t.Fatalf("no vector in slot %d (%v)", slot, err)
	}
	return must(b.deref(pos))(t), must(b.vector(pos, elemSize))(t)
}

// shareChildren makes the second child of every two-child field refer to the first child,
// down the first schema field: a depth-d chain then expands to 2^d fields.
func shareChildren(t *testing.T, b fbuf) {
	t.Helper()
	_, fields := footerVector(t, b, -schemaFields, 4)
	f := must(b.tableElem(fields, 0))(t)
	for level := 0; ; level++ {
		kids := must(b.vectorField(f, fieldChildren, 4))(t)
		if kids.n != 2 {
			if level < 30 {
				t.Fatalf("shared only %d levels", level)
			}
			return
		}
		first := must(b.deref(kids.elem(0)))(t)
		binary.LittleEndian.PutUint32(b[kids.elem(1):], uint32(first-kids.elem(1)))
		f = must(b.table(first))(t)
	}
}

func TestCheckArrowFooterRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.arrow")
	cfgs := make([]particles.Config, BatchRows+1) // two record batches
	for i := range cfgs {
		cfgs[i] = synthConfig(int64(i), particles.DW4)
	}
	writeConfigs(t, good, cfgs)
	chain := filepath.Join(dir, "chain.arrow")
	writeNullRows(t, chain, arrow.NewSchema([]arrow.Field{{Name: "c", Type: structChain(40), Nullable: true}}, nil), 1)
	deep := filepath.Join(dir, "deep.arrow")
	writeNullRows(t, deep, arrow.NewSchema([]arrow.Field{{Name: "x", Type: nestedList(maxNesting), Nullable: true}}, nil), 0) // no rows: arrow-go refuses to write them

	put32 := func(b []byte, at uint64, v uint32) { binary.LittleEndian.PutUint32(b[at:], v) }
	cases := []struct {
		name, src string
		forge     func(data []byte) []byte
		want      string
	}{
		{"truncated by a byte", good, func(d []byte) []byte { return d[:len(d)-1] }, "no ARROW1 magic at the end"},
		{"cut in half", good, func(d []byte) []byte { return d[:len(d)/2] }, "no ARROW1 magic at the end"},
		{"too small", good, func(d []byte) []byte { return append(d[:8:8], d[len(d)-10:]...) }, "file of 18 bytes is too small"},
		{"bad magic at the start", good, func(d []byte) []byte { d[0] = 'X'; return d }, "no ARROW1 magic at the start"},
		{"footer length beyond the file", good, func(d []byte) []byte {
			put32(d, uint64(len(d)-arrowTail), uint32(len(d)))
			return d
		}, "footer length"},
		{"footer length zero", good, func(d []byte) []byte { put32(d, uint64(len(d)-arrowTail), 0); return d }, "footer length 0"},
		{"root offset outside", good, func(d []byte) []byte { put32(arrowFooter(d), 0, 0xfffffff0); return d }, "points outside"},
		{"vtable outside", good, func(d []byte) []byte {
			b := arrowFooter(d)
			put32(b, must(b.deref(0))(t), 0xfff00000) // soffset −1 MiB: vtable 1 MiB after the table
			return d
		}, "vtable"},
		{"12M schema fields", good, func(d []byte) []byte {
			at, _ := footerVector(t, arrowFooter(d), -schemaFields, 4)
			put32(arrowFooter(d), at, 12_000_000)
			return d
		}, "vector at"},
		{"record batch outside the file", good, func(d []byte) []byte {
			_, v := footerVector(t, arrowFooter(d), footerRecordBatches, blockSize)
			binary.LittleEndian.PutUint64(arrowFooter(d)[v.elem(0):], 1<<40)
			return d
		}, "record batch 0: block at offset 1099511627776"},
		{"record batches overlap", good, func(d []byte) []byte {
			b := arrowFooter(d)
			_, v := footerVector(t, b, footerRecordBatches, blockSize)
			copy(b[v.elem(1):v.elem(2)], b[v.elem(0):v.elem(1)])
			return d
		}, "overlaps"},
		{"shared field tree", chain, func(d []byte) []byte { shareChildren(t, arrowFooter(d)); return d }, "expands to more fields"},
		{"fields nest too deep", deep, func(d []byte) []byte { return d }, "fields nest deeper than 64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "forged.arrow")
			if err := os.WriteFile(path, c.forge(must(os.ReadFile(c.src))(t)), 0o644); err != nil {
				t.Fatal(err)
			}
			f := must(os.Open(path))(t)
			defer f.Close()
			_, err := checkFooter(path, f, ArrowIPC)
			wantErr(t, err, path, c.want)
			wantErr(t, err, path, ": Arrow IPC footer: ")
			if _, err := Schema(path); err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("Schema: error %v does not name the file", err)
			}
		})
	}
}

// parquetFooter returns the FileMetaData of the Parquet file data.
func parquetFooter(data []byte) []byte {
	n := int(binary.LittleEndian.Uint32(data[len(data)-parquetTail:]))
	return data[len(data)-parquetTail-n : len(data)-parquetTail]
}

// withParquetFooter returns data with its FileMetaData replaced by footer.
func withParquetFooter(data, footer []byte) []byte {
	old := parquetFooter(data)
	out := append([]byte(nil), data[:len(data)-parquetTail-len(old)]...)
	out = append(out, footer...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(footer)))
	return append(out, parquetMagic...)
}

// forgeSchemaListSize returns footer with the size of its schema list set to n.
func forgeSchemaListSize(t *testing.T, footer []byte, n uint64) []byte {
	t.Helper()
	r := &thriftReader{b: footer}
	start := -1
	errFound := errors.New("found")
	_ = r.fields(0, func(id int16, typ byte) (bool, error) {
		if id == metaSchema {
			start = r.pos
			return true, errFound
		}
		return false, nil
	})
	if start < 0 {
		t.Fatal("no schema list in the footer")
	}
	r = &thriftReader{b: footer, pos: start}
	elem, _, err := r.listHeader()
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), footer[:start]...)
	out = binary.AppendUvarint(append(out, 0xf0|elem), n)
	return append(out, footer[r.pos:]...)
}

func TestCheckParquetFooterRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.parquet")
	writeMolecules(t, good, []molecule.Molecule{synthMolecule(1, 5), synthMolecule(2, 7)})
	deep := filepath.Join(dir, "deep.parquet") // 32 lists: 65 nested groups in Parquet
	writeNullRows(t, deep, arrow.NewSchema([]arrow.Field{{Name: "x", Type: nestedList(32), Nullable: true}}, nil), 1)

	put32 := func(b []byte, at int, v uint32) { binary.LittleEndian.PutUint32(b[at:], v) }
	cases := []struct {
		name, src string
		forge     func(data []byte) []byte
		want      string
	}{
		{"truncated by a byte", good, func(d []byte) []byte { return d[:len(d)-1] }, "no PAR1 magic at the end"},
		{"cut in half", good, func(d []byte) []byte { return d[:len(d)/2] }, "no PAR1 magic at the end"},
		{"too small", good, func(d []byte) []byte { return d[:8] }, "file of 8 bytes is too small"},
		{"bad magic at the start", good, func(d []byte) []byte { d[3] = '2'; return d }, "no PAR1 magic at the start"},
		{"encrypted footer", good, func(d []byte) []byte { copy(d[len(d)-4:], "PARE"); return d }, "encrypted"},
		{"footer length beyond the file", good, func(d []byte) []byte {
			put32(d, len(d)-parquetTail, uint32(len(d)-parquetTail-3))
			return d
		}, "footer length"},
		{"footer length zero", good, func(d []byte) []byte { put32(d, len(d)-parquetTail, 0); return d }, "footer length 0"},
		{"footer without its last byte", good, func(d []byte) []byte {
			f := parquetFooter(d)
			return withParquetFooter(d, f[:len(f)-1])
		}, "unexpected end of the footer"},
		{"footer cut in half", good, func(d []byte) []byte {
			f := parquetFooter(d)
			return withParquetFooter(d, f[:len(f)/2])
		}, "footer"},
		{"forged list size", good, func(d []byte) []byte {
			return withParquetFooter(d, forgeSchemaListSize(t, parquetFooter(d), 123456789))
		}, "list of 123456789 elements"},
		{"schema nests too deep", deep, func(d []byte) []byte { return d }, "schema: element 64: elements nest deeper than 64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "forged.parquet")
			if err := os.WriteFile(path, c.forge(must(os.ReadFile(c.src))(t)), 0o644); err != nil {
				t.Fatal(err)
			}
			f := must(os.Open(path))(t)
			defer f.Close()
			_, err := checkFooter(path, f, Parquet)
			wantErr(t, err, path, c.want)
			wantErr(t, err, path, ": Parquet footer: ")
			if _, err := Schema(path); err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("Schema: error %v does not name the file", err)
			}
		})
	}
}

// tb builds Thrift compact-protocol bytes (long-form field headers).
type tb []byte

func (b tb) field(id int16, typ byte) tb { return binary.AppendVarint(append(b, typ), int64(id)) }
func (b tb) i32(v int64) tb              { return binary.AppendVarint(b, v) }
func (b tb) uvarint(v uint64) tb         { return binary.AppendUvarint(b, v) }
func (b tb) bin(s string) tb             { return append(b.uvarint(uint64(len(s))), s...) }
func (b tb) stop() tb                    { return append(b, ctStop) }
func (b tb) raw(p ...byte) tb            { return append(b, p...) }
func (b tb) list(elem byte, n uint64) tb {
	if n < 15 {
		return append(b, byte(n)<<4|elem)
	}
	return append(b, 0xf0|elem).uvarint(n)
}

// schemaElems returns a FileMetaData schema list of elements with the given num_children.
func schemaElems(children ...int64) tb {
	b := tb{}.field(metaSchema, ctList).list(ctStruct, uint64(len(children)))
	for _, c := range children {
		if c > 0 || c < 0 {
			b = b.field(elementNumChildren, ctI32).i32(c)
		}
		b = b.field(4, ctBinary).bin("x").stop()
	}
	return b
}

func arrowSchemaKV(value string) tb {
	return tb{}.field(metaKeyValues, ctList).list(ctStruct, 1).
		field(kvKey, ctBinary).bin(arrowSchemaKey).field(kvValue, ctBinary).bin(value).stop()
}

// schemaMessage returns the encapsulated IPC Schema message of schema (as pqarrow stores it).
func schemaMessage(t *testing.T, schema *arrow.Schema) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(memory.NewGoAllocator()))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// messageTable returns the Message flatbuffer of an encapsulated message (aliasing msg).
func messageTable(t *testing.T, msg []byte) (fbuf, fbTable) {
	t.Helper()
	n, rest, err := messageLength(msg)
	if err != nil {
		t.Fatal(err)
	}
	b := fbuf(rest[:n])
	return b, must(b.root())(t)
}

func TestCheckFileMetaData(t *testing.T) {
	msg := schemaMessage(t, richSchema())
	notSchema := bytes.Clone(msg)
	b, m := messageTable(t, notSchema)
	pos, _, _ := b.slot(m, messageHeaderType, 1)
	b[pos] = 3 // RecordBatch
	valid := slices.Clip(schemaElems(2, 0, 0))
	deepTree := make([]int64, 70)
	for i := range 69 {
		deepTree[i] = 1
	}
	deepStructs := tb{}
	for range 100 {
		deepStructs = deepStructs.field(1, ctStruct)
	}
	deepLists := tb{}.field(99, ctList)
	for range 100 {
		deepLists = deepLists.list(ctList, 1)
	}
	cases := []struct {
		name   string
		footer tb
		want   string
	}{
		{"valid", valid.stop(), ""},
		{"valid with unknown fields", valid.field(1, ctI32).i32(2).field(3, ctI64).i32(1<<40).field(6, ctBinary).bin("me").
			field(7, ctTrue).field(8, ctDouble).raw(0, 0, 0, 0, 0, 0, 0, 0).field(9, ctMap).uvarint(1).raw(ctBinary<<4|ctI32).bin("k").i32(1).
			field(10, ctList).list(ctTrue, 2).raw(1, 2).field(11, ctByte).raw(7).field(12, ctSet).list(ctI16, 1).i32(3).stop(), ""},
		{"valid ARROW:schema", append(valid, arrowSchemaKV(base64.StdEncoding.EncodeToString(msg))...).stop(), ""},
		{"unpadded ARROW:schema", append(valid, arrowSchemaKV(base64.RawStdEncoding.EncodeToString(msg[:len(msg)-1]))...).stop(), ""},
		{"no schema", tb{}.stop(), "no schema"},
		{"empty", tb{}, "unexpected end"},
		{"truncated", valid, "unexpected end"},
		{"forged list size", tb{}.field(metaSchema, ctList).list(ctStruct, 123456789), "schema: list of 123456789 elements at offset 2 exceeds the 0 footer bytes left"},
		{"forged double list", tb{}.field(99, ctList).list(ctDouble, 3).raw(make([]byte, 16)...), "list of 3 elements"},
		{"forged map", tb{}.field(99, ctMap).uvarint(1000).raw(ctI32<<4|ctI32, 1, 1), "map of 1000 entries"},
		{"forged string length", tb{}.field(6, ctBinary).uvarint(1 << 40).raw('x'), "1099511627776 bytes at offset"},
		{"overlong varint", tb{}.field(1, ctI32).raw(bytes.Repeat([]byte{0xff}, 11)...), "longer than 10 bytes"},
		{"field id out of range", tb{ctI32}.i32(1 << 20), "field id 1048576 out of range"},
		{"unknown type", tb{}.field(7, 13), "unknown Thrift type 13"},
		{"structs nest too deep", deepStructs, "nest deeper than 64"},
		{"lists nest too deep", deepLists, "nest deeper than 64"},
		{"schema nests too deep", schemaElems(deepTree...).stop(), "schema: element 64: elements nest deeper than 64"},
		{"element outside the tree", schemaElems(1, 0, 0).stop(), "schema: element 2: element outside the tree"},
		{"tree incomplete", schemaElems(3, 0).stop(), "still expects 2 children"},
		{"negative num_children", schemaElems(-1).stop(), "invalid num_children -1"},
		{"schema not structs", tb{}.field(metaSchema, ctList).list(ctI32, 1).i32(1).stop(), "schema: list of type 5, not of structs"},
		{"ARROW:schema not base64", append(valid, arrowSchemaKV("!!!!")...).stop(), "key-value metadata: ARROW:schema: base64"},
		{"ARROW:schema not a schema", append(valid, arrowSchemaKV(base64.StdEncoding.EncodeToString(notSchema))...).stop(), "not a schema message (header type 3)"},
		{"ARROW:schema truncated", append(valid, arrowSchemaKV(base64.StdEncoding.EncodeToString(msg[:40]))...).stop(), "ARROW:schema: message metadata length"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, checkFileMetaData(c.footer), "", c.want)
		})
	}
}

func TestCheckSchemaMessage(t *testing.T) {
	good := schemaMessage(t, richSchema())
	cases := []struct {
		name  string
		forge func(msg []byte)
		want  string
	}{
		{"valid", func([]byte) {}, ""},
		{"metadata length beyond the message", func(m []byte) { binary.LittleEndian.PutUint32(m[4:], 1<<30) }, "metadata length 1073741824"},
		{"header type", func(m []byte) {
			b, tbl := messageTable(t, m)
			pos, _, _ := b.slot(tbl, messageHeaderType, 1)
			b[pos] = 2
		}, "not a schema message (header type 2)"},
		{"12M fields", func(m []byte) {
			b, tbl := messageTable(t, m)
			schema, _, _ := b.tableField(tbl, messageHeader)
			pos, _, _ := b.slot(schema, schemaFields, 4)
			binary.LittleEndian.PutUint32(b[must(b.deref(pos))(t):], 12_000_000)
		}, "schema fields: vector at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := bytes.Clone(good)
			c.forge(msg)
			wantErr(t, checkSchemaMessage(msg), "", c.want)
		})
	}
	wantErr(t, checkSchemaMessage(good[:3]), "", "too short")
	legacy := good[4:] // before Arrow 0.15: no continuation marker
	wantErr(t, checkSchemaMessage(legacy), "", "")
}

// TestUpstreamArrowGoInputs replays the fuzz inputs that made arrow-go v18.8.0 allocate
// gigabytes or overflow its stack, and checks that the footer validation rejects them.
func TestUpstreamArrowGoInputs(t *testing.T) {
	for name, want := range map[string]string{
		"arrow-footer-field-children-12M": "Arrow IPC footer: schema field 0: children: vector at 672 of 12200000 elements",
		"arrow-footer-field-child-cycle":  "Arrow IPC footer: schema field 3: children: offset 4294967280 at 1812 points outside",
		"parquet-footer-thrift-list-size": "Parquet footer: row groups: list of 46137343 elements at offset 192 exceeds the 1655 footer bytes left",
	} {
		t.Run(name, func(t *testing.T) {
			raw := string(must(os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzReadTable", name)))(t))
			lines := strings.Split(raw, "\n")
			if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
				t.Fatalf("%s is not a go fuzz corpus file", name)
			}
			data := must(strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")))(t)
			path := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Schema(path)
			wantErr(t, err, path, want)
		})
	}
}
