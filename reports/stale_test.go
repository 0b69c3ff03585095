package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enflow/enflow/pipeline/jobs"
)

// TestReportLeavesOutStaleUnits: the results of a state directory hold the RealNVP units of
// an earlier version of a spec (other finetune epochs) beside those of the current one. With
// the spec's manifest the report shows the current units only and says how many it left out;
// --all-units shows both; without a manifest (an old state directory) everything is shown.
func TestReportLeavesOutStaleUnits(t *testing.T) {
	old := bgRows()
	rows := append([]jobs.Row(nil), old...)
	renamed := func(id string) string { return "5" + id[1:] }
	staleRows := 0
	staleUnits := map[string]bool{}
	for _, r := range old {
		if r.Unit[0] != '1' { // the RealNVP group: 1000000000000000 and its evaluations 100000000000000a…
			continue
		}
		staleRows++
		staleUnits[r.Unit] = true
		n := r
		n.Unit = renamed(r.Unit)
		if n.ParentUnit != "" {
			n.ParentUnit = renamed(n.ParentUnit)
		}
		n.UnitSpec = strings.Replace(n.UnitSpec, `"epochs":2`, `"epochs":3`, 1)
		n.RecordedAt = r.RecordedAt.Add(time.Hour)
		rows = append(rows, n)
	}
	var current []jobs.UnitRef
	seen := map[string]bool{}
	for _, r := range rows {
		if !staleUnits[r.Unit] && !seen[r.Unit] {
			seen[r.Unit] = true
			current = append(current, jobs.UnitRef{ID: r.Unit, Kind: r.UnitKind})
		}
	}
	tests := []struct {
		name                string
		manifest, allUnits  bool
		wantNBG, wantStates int    // RealNVP rows of the generalisation table, rows of the states table
		wantNote            string // "" = no note
		wantStaleMark       bool
	}{
		{"current units only", true, false, 2, 3, "Left out: ", false},
		{"all units", true, true, 4, 4, "Included with --all-units: ", true},
		{"no manifest", false, false, 4, 4, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := writeResults(t, rows)
			if tc.manifest {
				m := &jobs.Manifest{Schema: jobs.ManifestSchema, Spec: "spec", Units: current}
				if err := jobs.WriteManifest(state, m); err != nil {
					t.Fatal(err)
				}
			}
			out := t.TempDir()
			mdPath := filepath.Join(out, "r.md")
			r, err := Generate([]string{state}, filepath.Join(out, "r.html"), mdPath, Options{Now: t0, AllUnits: tc.allUnits})
			if err != nil {
				t.Fatal(err)
			}
			md, err := os.ReadFile(mdPath)
			if err != nil {
				t.Fatal(err)
			}
			nbg := 0
			for _, row := range r.BG.Generalisation.Rows {
				if row.Kind == "realnvp" {
					nbg++
				}
			}
			if nbg != tc.wantNBG || len(r.BG.States.Rows) != tc.wantStates {
				t.Errorf("%d RealNVP rows in the generalisation table, %d states rows; want %d and %d", nbg, len(r.BG.States.Rows), tc.wantNBG, tc.wantStates)
			}
			wantRows := len(rows)
			if tc.manifest && !tc.allUnits {
				wantRows -= staleRows
			}
			if r.Rows != wantRows {
				t.Errorf("report counts %d rows, want %d", r.Rows, wantRows)
			}
			note := r.StaleNote()
			if tc.wantNote == "" {
				if note != "" || r.StaleUnits != 0 {
					t.Errorf("note %q with %d stale units, want none", note, r.StaleUnits)
				}
			} else {
				if r.StaleUnits != len(staleUnits) || r.StaleRows != staleRows {
					t.Errorf("%d stale units and %d rows, want %d and %d", r.StaleUnits, r.StaleRows, len(staleUnits), staleRows)
				}
				if !strings.HasPrefix(note, tc.wantNote) || !bytes.Contains(md, []byte("*"+note+"*")) {
					t.Errorf("note %q (want the prefix %q) not in the Markdown:\n%s", note, tc.wantNote, md)
				}
			}
			if got := bytes.Contains(md, []byte("` (stale) |")); got != tc.wantStaleMark {
				t.Errorf("units marked stale in the Markdown: %v, want %v", got, tc.wantStaleMark)
			}
			for id := range staleUnits {
				if shown := bytes.Contains(md, []byte("`"+id+"`")); shown != !(tc.manifest && !tc.allUnits) {
					t.Errorf("stale unit %s listed under Units: %v", id, shown)
				}
			}
		})
	}
}

// TestCommittedBGRecords: the committed Boltzmann-generator records (state directories
// without a manifest) still render with every unit.
func TestCommittedBGRecords(t *testing.T) {
	for name, states := range map[string]bool{"bg_generalisation": false, "bg_discovery": true} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("results", name)
			rows, err := jobs.ReadResults(src)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Generate([]string{src}, filepath.Join(t.TempDir(), "r.html"), "", Options{Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			if r.Rows != len(rows) || r.StaleUnits != 0 || r.StaleNote() != "" {
				t.Errorf("%d rows of %d, %d stale units", r.Rows, len(rows), r.StaleUnits)
			}
			if r.BG == nil || len(r.BG.Generalisation.Rows) == 0 || (r.BG.States != nil) != states {
				t.Errorf("no Boltzmann-generator section with its generalisation table (and states table: %v)", states)
			}
		})
	}
}
