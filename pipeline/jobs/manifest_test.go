package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/enflow/enflow/etl/particles"
)

func TestSplitStale(t *testing.T) {
	row := func(spec, unit string) Row { return Row{SpecName: spec, Unit: unit, Metric: "m"} }
	rows := []Row{row("a", "a1"), row("a", "a1"), row("a", "a2"), row("b", "b1"), row("c", "c1")}
	man := func(spec string, ids ...string) *Manifest {
		m := &Manifest{Schema: ManifestSchema, Spec: spec}
		for _, id := range ids {
			m.Units = append(m.Units, UnitRef{ID: id})
		}
		return m
	}
	tests := []struct {
		name      string
		manifests []*Manifest
		wantStale []string // units of the stale rows, in row order
		wantRows  int      // stale rows
	}{
		{"no manifests: everything current", nil, nil, 0},
		{"a's manifest drops a1", []*Manifest{man("a", "a2")}, []string{"a1"}, 2},
		{"a's manifest keeps both", []*Manifest{man("a", "a1", "a2")}, nil, 0},
		{"an empty manifest: all of a stale", []*Manifest{man("a")}, []string{"a1", "a2"}, 3},
		{"b's manifest leaves a and c alone", []*Manifest{man("b", "b1")}, nil, 0},
		{"manifests of a and b", []*Manifest{man("a", "a1"), man("b", "b2")}, []string{"a2", "b1"}, 2},
		{"a manifest of a spec without rows", []*Manifest{man("z", "z1")}, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := map[string]*Manifest{}
			for _, m := range tc.manifests {
				ms[m.Spec] = m
			}
			current, stale := SplitStale(rows, ms)
			if len(current)+len(stale) != len(rows) || len(stale) != tc.wantRows {
				t.Fatalf("%d current + %d stale rows of %d, want %d stale", len(current), len(stale), len(rows), tc.wantRows)
			}
			st := StaleOf(stale)
			if st.Rows != tc.wantRows || !slices.Equal(st.Units, append([]string{}, tc.wantStale...)) {
				t.Errorf("stale %+v, want units %v and %d rows", st, tc.wantStale, tc.wantRows)
			}
			for _, r := range current {
				if slices.Contains(tc.wantStale, r.Unit) {
					t.Errorf("stale unit %s kept", r.Unit)
				}
			}
		})
	}
}

func TestManifestFile(t *testing.T) {
	tests := []struct {
		spec, want string // want: exact name, or the prefix before "-<hash>.json"
		hashed     bool
	}{
		{"bg_discovery", "bg_discovery.json", false},
		{"table1-dw4.v2", "table1-dw4.v2.json", false},
		{"with space", "with_space", true},
		{"../escape", "_escape", true},
		{".hidden", "hidden", true},
		{"", "", true},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got := manifestFile(tc.spec)
		if strings.ContainsAny(got, "/\\ ") || strings.HasPrefix(got, ".") || !strings.HasSuffix(got, ".json") {
			t.Errorf("manifestFile(%q) = %q: not a plain visible .json name", tc.spec, got)
		}
		if tc.hashed {
			if !strings.HasPrefix(got, tc.want+"-") || len(got) != len(tc.want)+1+8+len(".json") {
				t.Errorf("manifestFile(%q) = %q, want %s-<8 hex>.json", tc.spec, got, tc.want)
			}
		} else if got != tc.want {
			t.Errorf("manifestFile(%q) = %q, want %q", tc.spec, got, tc.want)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("specs %q and %q share the manifest file %s", prev, tc.spec, got)
		}
		seen[got] = tc.spec
	}
	if manifestFile("a b") == manifestFile("a_b") {
		t.Errorf("a sanitised name collides with the plain one")
	}
}

func TestStateDirOf(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	for _, d := range []string{filepath.Join(state, ResultsDirName), filepath.Join(state, unitsDirName), filepath.Join(root, "loose", ResultsDirName)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(root, "results.parquet")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{state, state},
		{filepath.Join(state, ResultsDirName), state},
		{filepath.Join(state, ResultsDirName) + "/", state},
		{file, ""},
		{filepath.Join(root, "loose", ResultsDirName), ""}, // a results directory outside a state directory
		{filepath.Join(root, "missing"), ""},
	}
	for _, tc := range tests {
		if got := StateDirOf(tc.path); got != tc.want {
			t.Errorf("StateDirOf(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestRunWritesManifest: every jobs run records the whole spec's units, byte-identical from
// every shard and not rewritten when unchanged; concurrent writers leave one complete file.
func TestRunWritesManifest(t *testing.T) {
	o, _ := newTestOptions(t, testSpec)
	plan, err := Expand(o.Spec, PlanOptions{DataDir: o.DataDir, Code: o.Code})
	if err != nil {
		t.Fatal(err)
	}
	path := ManifestPath(o.StateDir, o.Spec.Name)
	var first []byte
	for i, shard := range []Shard{{0, 2}, {1, 2}, {0, 1}} {
		o.Shard = shard
		if _, err := Run(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
			continue
		}
		if !bytes.Equal(b, first) {
			t.Errorf("shard %s wrote another manifest:\n%s\nvs\n%s", shard, b, first)
		}
	}
	ms, err := ReadManifests(o.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	m := ms[o.Spec.Name]
	if m == nil || len(m.Units) != len(plan.Units) || m.Code != "test" || m.Spec != "unit-test" {
		t.Fatalf("manifest %+v, want the %d units of the plan", m, len(plan.Units))
	}
	for i, u := range plan.Units {
		mu := m.Units[i]
		if mu.ID != u.ID || mu.Kind != u.Kind || mu.Model != u.Model || mu.NData != u.NData || (u.Parent != nil) != (mu.Parent != "") {
			t.Errorf("manifest unit %d %+v, plan unit %s %s %s", i, mu, u.ID, u.Kind, u.Model)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(o.StateDir, m); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("an unchanged manifest was rewritten")
	}

	// Concurrent writers (the shards of an array job starting together).
	state := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- WriteManifest(state, m)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(state, ManifestsDirName))
	if len(entries) != 1 {
		t.Errorf("%d files in the manifests directory after concurrent writes, want 1", len(entries))
	}
	if b, _ := os.ReadFile(ManifestPath(state, m.Spec)); !bytes.Equal(b, first) {
		t.Errorf("concurrently written manifest differs")
	}
}

// TestChangedSpecStaleUnits: after the finetune epochs of a two-stage spec change, the old
// units stay in the state directory; the results of the new manifest leave them out, status
// lists them, and prune moves them aside (keeping busy units and units the latest manifest
// still has).
func TestChangedSpecStaleUnits(t *testing.T) {
	o, _ := newTestOptions(t, bgSpec)
	writeTinyParticles(t, filepath.Join(o.DataDir, "bg"), particles.DW4, map[string]int{"train": 60, "val": 10, "test": 10}, 3)
	ctx := context.Background()
	ids := func(o Options) []string {
		t.Helper()
		p, err := Expand(o.Spec, PlanOptions{DataDir: o.DataDir, Code: o.Code})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, u := range p.Units {
			out = append(out, u.ID)
		}
		sort.Strings(out)
		return out
	}
	edit := func(old, new string) Options {
		t.Helper()
		spec, err := ParseSpec(o.Spec.Path, []byte(strings.Replace(bgSpec, old, new, 1)))
		if err != nil {
			t.Fatal(err)
		}
		o2 := o
		o2.Spec = spec
		return o2
	}
	run := func(o Options, want string, n int) {
		t.Helper()
		sum, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Count(want) != n {
			t.Fatalf("run counts %v, want %d %s", sum.Counts, n, want)
		}
	}
	run(o, OutcomeRan, 4)
	v1 := ids(o)
	v2o := edit("epochs = 2, kl_samples = 8", "epochs = 3, kl_samples = 8")
	v2 := ids(v2o)
	if slices.Equal(v1, v2) {
		t.Fatal("changing the finetune epochs kept the unit identities")
	}
	run(v2o, OutcomeRan, 4)
	manifest, err := os.ReadFile(ManifestPath(o.StateDir, o.Spec.Name))
	if err != nil {
		t.Fatal(err)
	}
	// A run with the data missing (a wrong --data) keeps the manifest: its identities are
	// incomplete.
	noData := v2o
	noData.DataDir = t.TempDir()
	run(noData, OutcomeMissingInput, 1)
	if b, _ := os.ReadFile(ManifestPath(o.StateDir, o.Spec.Name)); !bytes.Equal(b, manifest) {
		t.Errorf("a run with missing inputs replaced the manifest")
	}

	// The results of the state directory (or its results/) without the old units.
	for _, src := range []string{o.StateDir, filepath.Join(o.StateDir, ResultsDirName)} {
		current, stale, err := ReadCurrentResults(src)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, r := range current {
			got[r.Unit] = true
		}
		if keys := sortedSet(got); !slices.Equal(keys, v2) {
			t.Errorf("%s: current units %v, want the new expansion %v", src, keys, v2)
		}
		if st := StaleOf(stale); !slices.Equal(st.Units, v1) || st.Rows == 0 {
			t.Errorf("%s: stale %+v, want the old units %v", src, st, v1)
		}
	}
	all, err := ReadResults(o.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]bool{}
	for _, r := range all {
		units[r.Unit] = true
	}
	if len(units) != 8 {
		t.Errorf("ReadResults: %d units, want all 8 (old and new)", len(units))
	}

	// Status of the new spec lists the old units; they are no longer in the manifest.
	st, err := StatusOf(ctx, v2o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts[OutcomeDone] != 4 || len(st.Stale) != 4 {
		t.Fatalf("status: counts %v, %d stale units; want 4 done and 4 stale", st.Counts, len(st.Stale))
	}
	var staleIDs []string
	for i, su := range st.Stale {
		staleIDs = append(staleIDs, su.ID)
		if len(su.Parts) != 1 || su.Rows == 0 || !su.Dir || su.InManifest || su.Dataset != "dw4" || su.Model != "realnvp" {
			t.Errorf("stale unit %+v", su)
		}
		if (i == 0) != (su.Kind == KindTrain) {
			t.Errorf("stale unit %d is a %s unit: the training unit comes first", i, su.Kind)
		}
	}
	sort.Strings(staleIDs)
	if !slices.Equal(staleIDs, v1) {
		t.Errorf("stale units %v, want %v", staleIDs, v1)
	}

	// A third version, not run yet: prune keeps what the latest manifest (v2) still has.
	v3o := edit("epochs = 2, kl_samples = 8", "epochs = 4, kl_samples = 8")
	// A stale unit whose lock is held is kept too.
	busy := st.Stale[0].ID
	lock, err := TryLock(filepath.Join(o.StateDir, unitsDirName, busy, lockFileName), LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Prune(ctx, v3o, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Pruned) != 4 || len(rep.Kept) != 4 || !rep.DryRun {
		t.Errorf("dry run: %d would be pruned, %d kept; want the 4 old units and the 4 of the manifest kept", len(rep.Pruned), len(rep.Kept))
	}
	for _, k := range rep.Kept {
		if !k.InManifest || !strings.Contains(k.Reason, "manifest") {
			t.Errorf("kept %s: %q", k.ID, k.Reason)
		}
	}
	if _, stale, _ := ReadCurrentResults(o.StateDir); len(StaleOf(stale).Units) != 4 {
		t.Errorf("the dry run moved something")
	}
	rep, err = Prune(ctx, v3o, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Pruned) != 3 || len(rep.Kept) != 5 {
		t.Errorf("prune with a busy unit: %d pruned, %d kept; want 3 and 5", len(rep.Pruned), len(rep.Kept))
	}
	for _, k := range rep.Kept {
		if k.ID == busy && !strings.HasPrefix(k.Reason, "busy") {
			t.Errorf("busy unit kept for %q", k.Reason)
		}
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	rep, err = Prune(ctx, v2o, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Pruned) != 1 || rep.Pruned[0].ID != busy || len(rep.Kept) != 0 {
		t.Errorf("second prune: %+v, want the formerly busy unit", rep)
	}

	// Everything old is under pruned/, intact; the results and units hold the new expansion.
	_, finished, err := ListParts(filepath.Join(o.StateDir, ResultsDirName))
	if err != nil {
		t.Fatal(err)
	}
	if keys := sortedMap(finished); !slices.Equal(keys, v2) {
		t.Errorf("results after prune: %v, want %v", keys, v2)
	}
	moved, _ := filepath.Glob(filepath.Join(o.StateDir, PrunedDirName, "*", ResultsDirName, "part-*.parquet"))
	movedDirs, _ := filepath.Glob(filepath.Join(o.StateDir, PrunedDirName, "*", unitsDirName, "*", unitFileName))
	if len(moved) != 4 || len(movedDirs) != 4 {
		t.Errorf("pruned/ holds %d parts and %d unit directories, want 4 and 4", len(moved), len(movedDirs))
	}
	for _, p := range moved {
		if rows, err := ReadResultsFile(p); err != nil || len(rows) == 0 {
			t.Errorf("moved part %s: %d rows, %v", p, len(rows), err)
		}
	}
	if st, err := StatusOf(ctx, v2o); err != nil || len(st.Stale) != 0 {
		t.Errorf("status after prune: %v stale (%v)", st.Stale, err)
	}
	run(v2o, OutcomeDone, 4)
	if _, stale, _ := ReadCurrentResults(o.StateDir); len(stale) != 0 {
		t.Errorf("%d stale rows after prune", len(stale))
	}

	// A state directory without a manifest of the spec: prune refuses.
	fresh := v2o
	fresh.StateDir = t.TempDir()
	if _, err := Prune(ctx, fresh, false); !errors.Is(err, ErrNoManifest) {
		t.Errorf("prune without a manifest: %v, want ErrNoManifest", err)
	}
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedMap(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestStaleUnitJSON pins the JSON field names of jobs status --json's stale units.
func TestStaleUnitJSON(t *testing.T) {
	b, err := json.Marshal(StatusReport{Stale: []StaleUnit{{ID: "x", Kind: KindTrain, Parts: []string{"p"}, Rows: 3, Dir: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"stale_units":[{`, `"id":"x"`, `"parts":["p"]`, `"rows":3`, `"dir":true`, `"in_manifest":false`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("status JSON lacks %s: %s", want, b)
		}
	}
}
