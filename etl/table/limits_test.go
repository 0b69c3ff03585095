package table

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/enflow/enflow/etl/particles"
)

// writeCompressedArrow writes rows rows of a float64 column x (value(i)) and a dictionary
// column d to path as an Arrow IPC file compressed with opt (as pyarrow.feather does).
func writeCompressedArrow(t *testing.T, path string, opt ipc.Option, rows int, value func(int) float64) {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "x", Type: arrow.PrimitiveTypes.Float64},
		{Name: "d", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	xs := b.Field(0).(*array.Float64Builder)
	ds := b.Field(1).(*array.BinaryDictionaryBuilder)
	for i := range rows {
		xs.Append(value(i))
		if err := ds.AppendString([]string{"train", "val"}[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema), opt)
	if err == nil {
		err = w.Write(rec)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = os.WriteFile(path, buf.Bytes(), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// forgeUncompressedLength sets the uncompressed length of the first compressed buffer of
// the first dictionary (dict) or record batch message of the Arrow IPC file data.
func forgeUncompressedLength(t *testing.T, data []byte, dict bool, claim int64) {
	t.Helper()
	blocks := must(checkArrowFile(bytes.NewReader(data), int64(len(data))))(t)
	blk := blocks.batches[0]
	if dict {
		blk = blocks.dicts[0]
	}
	n, rest, err := messageLength(data[blk.off : blk.off+blk.meta])
	if err != nil {
		t.Fatal(err)
	}
	b := fbuf(rest[:n])
	batch, ok, err := recordBatchTable(b)
	if err != nil || !ok {
		t.Fatalf("no record batch table (%v)", err)
	}
	bufs := must(b.vectorField(batch, recordBatchBuffers, bufferStructSize))(t)
	for j := range bufs.n {
		off := int64(binary.LittleEndian.Uint64(b[bufs.elem(j):]))
		if binary.LittleEndian.Uint64(b[bufs.elem(j)+8:]) >= 8 {
			binary.LittleEndian.PutUint64(data[blk.off+blk.meta+off:], uint64(claim))
			return
		}
	}
	t.Fatal("no compressed buffer")
}

// TestCompressedArrowLengths: arrow-go allocates the uncompressed length that a compressed
// buffer declares; a forged terabyte used to kill the process (fatal out of memory).
func TestCompressedArrowLengths(t *testing.T) {
	codecs := map[string]ipc.Option{"zstd": ipc.WithZstd(), "lz4": ipc.WithLZ4()}
	for name, opt := range codecs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			// Legitimate files pass, even 8 MiB of zeros that compress ~250-fold (lz4) or more.
			for _, c := range []struct {
				file  string
				rows  int
				value func(int) float64
			}{{"zeros.arrow", 1 << 20, func(int) float64 { return 0 }}, {"ramp.arrow", 5000, func(i int) float64 { return float64(i) }}} {
				path := filepath.Join(dir, c.file)
				writeCompressedArrow(t, path, opt, c.rows, c.value)
				rows := 0
				err := ScanRecords(path, 0, func(rec arrow.RecordBatch) error { rows += int(rec.NumRows()); return nil })
				if err != nil || rows != c.rows {
					t.Fatalf("%s: read %d rows (err %v), want %d", c.file, rows, err, c.rows)
				}
			}
			good := must(os.ReadFile(filepath.Join(dir, "ramp.arrow")))(t)
			for _, c := range []struct {
				name  string
				dict  bool
				claim int64
				want  string
			}{
				{"record batch", false, 1 << 42, "record batch 0: buffer "},
				{"dictionary", true, 1 << 42, "Arrow IPC dictionary 0: buffer "},
				{"negative", false, -2, "uncompressed length -2"},
			} {
				t.Run(c.name, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "forged.arrow")
					data := bytes.Clone(good)
					forgeUncompressedLength(t, data, c.dict, c.claim)
					if err := os.WriteFile(path, data, 0o644); err != nil {
						t.Fatal(err)
					}
					var err error
					if got := allocated(func() { err = ScanRecords(path, 0, func(arrow.RecordBatch) error { return nil }) }); got > 16<<20 {
						t.Fatalf("allocated %d MiB", got>>20)
					}
					wantErr(t, err, path, c.want)
					wantErr(t, err, path, "compressed bytes can hold")
				})
			}
		})
	}
}

// forgePageSize sets the uncompressed (field 2) or compressed (field 3) size of the first
// page header of the Parquet file data, right after the leading magic.
func forgePageSize(t *testing.T, data []byte, field int16, size int64) []byte {
	t.Helper()
	r := &thriftReader{b: data, pos: parquetHead}
	start, end := -1, -1
	errFound := errors.New("found")
	_ = r.fields(0, func(id int16, typ byte) (bool, error) {
		if id != field || typ != ctI32 {
			return false, nil
		}
		start = r.pos
		_, err := r.zigzag()
		end = r.pos
		return true, errors.Join(err, errFound)
	})
	if start < 0 {
		t.Fatalf("no field %d in the first page header", field)
	}
	out := append(bytes.Clone(data[:start]), binary.AppendVarint(nil, size)...)
	return append(out, data[end:]...)
}

// TestParquetPageSizeLimits: arrow-go allocates the page sizes a page header declares
// (up to 64 MiB compressed, 256 MiB uncompressed by default) before reading the page.
func TestParquetPageSizeLimits(t *testing.T) {
	good := tempPath(t, "good.parquet")
	writeConfigs(t, good, []particles.Config{synthConfig(1, particles.DW4), synthConfig(2, particles.DW4)})
	data := must(os.ReadFile(good))(t)
	for _, c := range []struct {
		name  string
		field int16
		size  int64
		want  string
	}{
		{"compressed 60 MiB", 3, 60 << 20, "compressed page size 62914560 exceeds configured limit"},
		{"uncompressed 200 MiB", 2, 200 << 20, "uncompressed page size 209715200 exceeds configured limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "forged.parquet")
			if err := os.WriteFile(path, forgePageSize(t, data, c.field, c.size), 0o644); err != nil {
				t.Fatal(err)
			}
			var err error
			if got := allocated(func() { err = ScanRecords(path, 0, func(arrow.RecordBatch) error { return nil }) }); got > 16<<20 {
				t.Fatalf("allocated %d MiB", got>>20)
			}
			wantErr(t, err, path, c.want)
		})
	}
}
