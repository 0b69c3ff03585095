package table

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
)

// TestConfigRecordsRoundTrip writes the optional log_q and state_id columns (with nulls),
// more rows than one batch, in both formats, and reads them back with ReadConfigRecords and
// with the plain ReadConfigs, which must ignore them.
func TestConfigRecordsRoundTrip(t *testing.T) {
	const n = BatchRows + 7
	for _, ext := range []string{".parquet", ".arrow"} {
		for _, cols := range []ConfigColumns{{LogQ: true}, {StateID: true}, {LogQ: true, StateID: true}, {}} {
			path := filepath.Join(t.TempDir(), "c"+ext)
			w, err := NewConfigRecordWriter(path, cols)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]ConfigRecord, n)
			for i := range want {
				want[i] = ConfigRecord{Config: synthConfig(int64(i), particles.DW4), LogQ: -3.5 + float64(i)/7, StateID: int64(i % 5)}
				if i%11 == 3 {
					want[i].LogQ = math.NaN()
				}
				if i%13 == 4 {
					want[i].StateID = -1
				}
				if err := w.Write(&want[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			got, gotCols, err := ReadConfigRecords(path)
			if err != nil {
				t.Fatal(err)
			}
			if gotCols != cols || len(got) != n {
				t.Fatalf("%s %+v: read %d rows with columns %+v", ext, cols, len(got), gotCols)
			}
			for i := range got {
				wq, ws := want[i].LogQ, want[i].StateID
				if !cols.LogQ {
					wq = math.NaN()
				}
				if !cols.StateID {
					ws = -1
				}
				if !sameFloat(got[i].LogQ, wq) || got[i].StateID != ws || got[i].ID != want[i].ID ||
					!sameFloats(got[i].Positions, want[i].Positions) || !sameFloat(got[i].Energy, want[i].Energy) {
					t.Fatalf("%s %+v: row %d = %+v, want %+v", ext, cols, i, got[i], want[i])
				}
			}
			plain, err := ReadConfigs(path)
			if err != nil || len(plain) != n {
				t.Fatalf("%s %+v: ReadConfigs: %d rows, %v", ext, cols, len(plain), err)
			}
		}
	}
}

// TestConfigRecordsOfPlainFile reads a table written by ConfigWriter: no optional columns.
func TestConfigRecordsOfPlainFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plain.parquet")
	writeConfigs(t, path, []particles.Config{synthConfig(1, particles.LJ13)})
	got, cols, err := ReadConfigRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if cols != (ConfigColumns{}) || len(got) != 1 || !math.IsNaN(got[0].LogQ) || got[0].StateID != -1 {
		t.Fatalf("got %+v, columns %+v", got, cols)
	}
	// An empty table still reports its columns.
	empty := filepath.Join(t.TempDir(), "empty.arrow")
	w, err := NewConfigRecordWriter(empty, ConfigColumns{LogQ: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if rs, cols, err := ReadConfigRecords(empty); err != nil || len(rs) != 0 || !cols.LogQ {
		t.Fatalf("empty: %d rows, %+v, %v", len(rs), cols, err)
	}
}

func TestConfigRecordWriterErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.parquet")
	w, err := NewConfigRecordWriter(path, ConfigColumns{LogQ: true, StateID: true})
	if err != nil {
		t.Fatal(err)
	}
	bad := ConfigRecord{Config: synthConfig(9, particles.DW4)}
	bad.Positions = bad.Positions[:5]
	if err := w.Write(&bad); err == nil || !strings.Contains(err.Error(), "configuration 9: field positions: 5 values, want 8") {
		t.Fatalf("err = %v", err)
	}
	if err := w.Write(nil); err == nil || !strings.Contains(err.Error(), "nil configuration") {
		t.Fatalf("err = %v", err)
	}
	// The writer stays usable and the rejected rows leave no trace.
	good := ConfigRecord{Config: synthConfig(10, particles.DW4), LogQ: 1.5, StateID: 2}
	if err := w.Write(&good); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadConfigRecords(path)
	if err != nil || len(got) != 1 || got[0].LogQ != 1.5 || got[0].StateID != 2 {
		t.Fatalf("got %+v, %v", got, err)
	}
	// Abort leaves nothing.
	p2 := filepath.Join(dir, "aborted.arrow")
	w2, err := NewConfigRecordWriter(p2, ConfigColumns{StateID: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Write(&good); err != nil {
		t.Fatal(err)
	}
	w2.Abort()
	if names := dirEntries(t, dir); len(names) != 1 || names[0] != "bad.parquet" {
		t.Fatalf("directory holds %v", names)
	}
}
