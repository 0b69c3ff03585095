package table

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

func TestRowWriterRoundTrip(t *testing.T) {
	cols := []Col{{"model", String}, {"epoch", Int64}, {"nll", Float64}, {"converged", Bool}}
	type row struct {
		in   []any
		want []any // canonical values read back (nil = null)
	}
	rows := []row{
		{[]any{"enf", 10, 1.25, true}, []any{"enf", int64(10), 1.25, true}},
		{[]any{"edm", int64(-3), float32(0.5), false}, []any{"edm", int64(-3), 0.5, false}},
		{[]any{nil, uint8(7), 3, nil}, []any{nil, int64(7), 3.0, nil}},
		{[]any{"", int32(1), math.NaN(), true}, []any{"", int64(1), nil, true}},
	}
	for _, ext := range formats {
		t.Run(ext, func(t *testing.T) {
			checkedMem(t)
			path := tempPath(t, "metrics"+ext)
			w, err := NewRowWriter(path, cols, map[string]string{MetaSchema: "metrics/v1"})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			n := 0
			for i := 0; i < BatchRows+3; i++ { // more than one batch
				r := rows[i%len(rows)]
				if err := w.Append(r.in...); err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
				n++
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			schema, err := Schema(path)
			if err != nil {
				t.Fatal(err)
			}
			if md := schema.Metadata(); md.FindKey(MetaSchema) < 0 || md.Values()[md.FindKey(MetaSchema)] != "metrics/v1" {
				t.Errorf("metadata %v lacks %s=metrics/v1", md, MetaSchema)
			}
			i := 0
			err = ScanRecords(path, 1000, func(rec arrow.RecordBatch) error {
				if rec.NumRows() > 1000 {
					t.Errorf("batch of %d rows, want ≤ 1000", rec.NumRows())
				}
				for r := 0; r < int(rec.NumRows()); r, i = r+1, i+1 {
					want := rows[i%len(rows)].want
					for c := range cols {
						col := rec.Column(c)
						var got any
						if col.IsValid(r) {
							switch a := col.(type) {
							case *array.String:
								got = a.Value(r)
							case *array.Int64:
								got = a.Value(r)
							case *array.Float64:
								got = a.Value(r)
							case *array.Boolean:
								got = a.Value(r)
							default:
								t.Fatalf("column %s: unexpected array %T", cols[c].Name, col)
							}
						}
						if got != want[c] {
							t.Fatalf("row %d column %s: got %#v, want %#v", i, cols[c].Name, got, want[c])
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if i != n {
				t.Fatalf("read %d rows, want %d", i, n)
			}
		})
	}
}

func TestRowWriterErrors(t *testing.T) {
	dir := t.TempDir()
	newTests := []struct {
		name string
		cols []Col
		want string
	}{
		{"no columns", nil, "no columns"},
		{"case collision", []Col{{"H", Float64}, {"h", Float64}}, "differ only in case"},
		{"empty name", []Col{{"", Int64}}, "empty column name"},
		{"bad type", []Col{{"x", ColType(42)}}, "unknown type"},
	}
	for _, tc := range newTests {
		_, err := NewRowWriter(filepath.Join(dir, "x.parquet"), tc.cols, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewRowWriter error %v, want %q", tc.name, err, tc.want)
		}
	}
	w, err := NewRowWriter(filepath.Join(dir, "r.arrow"), []Col{{"s", String}, {"i", Int64}, {"f", Float64}, {"b", Bool}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	appendTests := []struct {
		name string
		row  []any
		want string
	}{
		{"too few", []any{"a"}, "1 values for 4 columns"},
		{"string as int", []any{"a", "1", 1.0, true}, `column "i": cannot store string in a int64 column`},
		{"float as int", []any{"a", 1.5, 1.0, true}, `column "i"`},
		{"int as string", []any{1, 1, 1.0, true}, `column "s"`},
		{"uint64 overflow", []any{"a", uint64(math.MaxUint64), 1.0, true}, "overflows int64"},
		{"string as bool", []any{"a", 1, 1.0, "yes"}, `column "b"`},
	}
	for _, tc := range appendTests {
		err := w.Append(tc.row...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "row 0:") {
			t.Errorf("%s: Append error %v, want one with %q and the row index", tc.name, err, tc.want)
		}
	}
	if err := w.Append("ok", 1, 2.5, false); err != nil {
		t.Fatalf("writer unusable after rejected rows: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	rows := 0
	if err := ScanRecords(filepath.Join(dir, "r.arrow"), 0, func(rec arrow.RecordBatch) error {
		rows += int(rec.NumRows())
		return nil
	}); err != nil || rows != 1 {
		t.Fatalf("read %d rows (err %v), want only the 1 accepted row", rows, err)
	}
}

func TestWriteRecords(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "step", Type: arrow.PrimitiveTypes.Int64},
		{Name: "samples", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64)},
	}, nil)
	for _, ext := range formats {
		t.Run(ext, func(t *testing.T) {
			checkedMem(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "s"+ext)
			const n = BatchRows*2 + 1
			err := WriteRecords(path, schema, func(b *array.RecordBuilder) error {
				steps := b.Field(0).(*array.Int64Builder)
				lb := b.Field(1).(*array.ListBuilder)
				vb := lb.ValueBuilder().(*array.Float64Builder)
				for i := range n {
					steps.Append(int64(i))
					lb.Append(true)
					vb.AppendValues([]float64{float64(i), -float64(i)}, nil)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			next, batches := int64(0), 0
			err = ScanRecords(path, 0, func(rec arrow.RecordBatch) error {
				batches++
				steps := rec.Column(0).(*array.Int64)
				for i := range steps.Len() {
					if steps.Value(i) != next {
						t.Fatalf("step %d, want %d", steps.Value(i), next)
					}
					next++
				}
				return nil
			})
			if err != nil || next != n || batches != 3 {
				t.Fatalf("read %d rows in %d batches (err %v), want %d in 3", next, batches, err, n)
			}

			boom := errors.New("boom")
			bad := filepath.Join(dir, "bad"+ext)
			if err := WriteRecords(bad, schema, func(*array.RecordBuilder) error { return boom }); !errors.Is(err, boom) {
				t.Fatalf("err %v, want the build error", err)
			}
			if _, err := os.Stat(bad); !os.IsNotExist(err) {
				t.Fatalf("failed WriteRecords left %s (stat err %v)", bad, err)
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Fatalf("directory holds %v, want only s%s", names, ext)
			}
		})
	}
}
