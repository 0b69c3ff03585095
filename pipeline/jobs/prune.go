package jobs

// Stale units: units of a spec that are in its state directory (a unit directory or a results
// part) but not in the spec's current expansion, because the spec, its data or (with
// code_identity = "revision") the code changed. StatusOf lists them; Prune moves them aside.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// PrunedDirName is the directory of a state directory that Prune moves stale units into.
const PrunedDirName = "pruned"

// StaleUnit is a unit of the spec found in the state directory but not in its current plan.
type StaleUnit struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Dataset string   `json:"dataset,omitempty"`
	Model   string   `json:"model,omitempty"`
	NData   int      `json:"n_data,omitempty"`
	Seed    int64    `json:"seed"`
	Label   string   `json:"label,omitempty"`
	Parent  string   `json:"parent,omitempty"`
	Parts   []string `json:"parts,omitempty"` // its results parts
	Rows    int      `json:"rows,omitempty"`  // result rows in them
	Dir     bool     `json:"dir"`             // it has a unit directory
	// InManifest: the unit is still in the manifest of the latest jobs run (the spec changed
	// since, but was not run again), so enflow report still shows it.
	InManifest bool `json:"in_manifest"`
}

// staleUnits lists the stale units of the runner's spec (not in r.plan), and the spec's
// manifest (nil if it has none).
func (r *runner) staleUnits() ([]StaleUnit, *Manifest, error) {
	name := r.o.Spec.Name
	ms, err := ReadManifests(r.state)
	if err != nil {
		return nil, nil, err
	}
	man := ms[name]
	var inManifest map[string]bool
	if man != nil {
		inManifest = man.IDs()
	}
	inPlan := map[string]bool{}
	for _, u := range r.plan.Units {
		inPlan[u.ID] = true
	}
	found := map[string]*StaleUnit{}
	parts, _, err := ListParts(r.results)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range parts {
		id := unitOfPart(filepath.Base(p))
		if inPlan[id] {
			continue
		}
		if su := found[id]; su != nil {
			su.Parts = append(su.Parts, p)
			continue
		}
		rows, err := ReadResultsFile(p)
		if err != nil {
			return nil, nil, err
		}
		if len(rows) == 0 || rows[0].SpecName != name {
			continue // another spec's unit sharing the state directory
		}
		f := rows[0]
		found[id] = &StaleUnit{ID: id, Kind: f.UnitKind, Dataset: f.Dataset, Model: f.Model, NData: int(f.NData), Seed: f.Seed,
			Label: f.Label, Parent: f.ParentUnit, Parts: []string{p}, Rows: len(rows)}
	}
	entries, err := os.ReadDir(filepath.Join(r.state, unitsDirName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("jobs: listing units: %w", err)
	}
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || inPlan[id] {
			continue
		}
		if su := found[id]; su != nil {
			su.Dir = true
			continue
		}
		doc, err := readUnitDoc(filepath.Join(r.state, unitsDirName, id))
		if err != nil || doc.Spec != name || doc.ID != id {
			continue // not attributable to this spec: left alone
		}
		su := &StaleUnit{ID: id, Parent: doc.Parent, Dir: true, Seed: -1}
		su.Kind, _ = doc.Unit["kind"].(string)
		su.Dataset, _ = doc.Unit["dataset"].(string)
		su.Model, _ = doc.Unit["model"].(string)
		su.Label, _ = doc.Unit["label"].(string)
		if n, ok := doc.Unit["n_data"].(float64); ok {
			su.NData = int(n)
		}
		if s, ok := doc.Unit["seed"].(float64); ok && doc.Parent == "" { // attached evaluations: the evaluation's seed
			su.Seed = int64(s)
		}
		found[id] = su
	}
	out := make([]StaleUnit, 0, len(found))
	for _, su := range found {
		if p := found[su.Parent]; p != nil && su.Dataset == "" { // attached evaluations: their training unit's
			su.Dataset, su.Model, su.NData, su.Seed = p.Dataset, p.Model, p.NData, p.Seed
		}
		su.InManifest = inManifest[su.ID]
		sort.Strings(su.Parts)
		out = append(out, *su)
	}
	// Training units with their evaluations, as in a plan.
	group := func(s StaleUnit) string {
		if s.Parent != "" {
			return s.Parent
		}
		return s.ID
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ga, gb := group(a), group(b); ga != gb {
			return ga < gb
		}
		if (a.Parent == "") != (b.Parent == "") {
			return a.Parent == ""
		}
		return a.ID < b.ID
	})
	return out, man, nil
}

func readUnitDoc(dir string) (*unitDoc, error) {
	b, err := os.ReadFile(filepath.Join(dir, unitFileName))
	if err != nil {
		return nil, err
	}
	var doc unitDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("jobs: %s: %w", filepath.Join(dir, unitFileName), err)
	}
	return &doc, nil
}

// PruneReport is the outcome of Prune.
type PruneReport struct {
	Spec     string `json:"spec"`
	StateDir string `json:"state_dir"`
	DryRun   bool   `json:"dry_run"`
	// Dest is where the pruned units went: STATE/pruned/<UTC time>/{results,units}.
	Dest   string      `json:"dest,omitempty"`
	Pruned []StaleUnit `json:"pruned"`
	Kept   []KeptUnit  `json:"kept"`
}

// KeptUnit is a stale unit Prune left in place, and why.
type KeptUnit struct {
	StaleUnit
	Reason string `json:"reason"`
}

// ErrNoManifest is returned by Prune for a spec without a manifest in the state directory.
var ErrNoManifest = errors.New("no manifest")

// Prune moves the stale units of the spec — in the state directory, attributed to the spec
// (unit.json or results), in neither its current plan nor the manifest of its latest jobs run
// — into STATE/pruned/<UTC time>/ (results parts to results/, unit directories to units/):
// nothing is deleted or rewritten, and neither jobs run nor enflow report looks there. A unit
// still in the manifest (the spec changed but was not run since) is kept, so a fresh plan
// that differs only because of, say, a new binary never prunes the results the report shows;
// a unit whose lock is held is kept too. The spec must have a manifest (run jobs run first).
// With dryRun nothing is moved.
func Prune(ctx context.Context, o Options, dryRun bool) (*PruneReport, error) {
	r, err := newRunner(o)
	if err != nil {
		return nil, err
	}
	stale, man, err := r.staleUnits()
	if err != nil {
		return nil, err
	}
	if man == nil {
		return nil, fmt.Errorf("jobs: %w of spec %s in %s: run `enflow jobs run` with it first (it records the units of the spec)",
			ErrNoManifest, o.Spec.Name, r.state)
	}
	rep := &PruneReport{Spec: o.Spec.Name, StateDir: r.state, DryRun: dryRun, Pruned: []StaleUnit{}, Kept: []KeptUnit{}}
	now := time.Now().UTC()
	dest := filepath.Join(r.state, PrunedDirName, now.Format("20060102T150405Z"))
	for _, su := range stale {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if su.InManifest {
			rep.Kept = append(rep.Kept, KeptUnit{su, "in the manifest of the latest jobs run: the report still shows it (run jobs run with the current spec first)"})
			continue
		}
		if dryRun {
			rep.Pruned = append(rep.Pruned, su)
			continue
		}
		rep.Dest = dest
		if reason, err := r.pruneUnit(su, dest); err != nil {
			return rep, err
		} else if reason != "" {
			rep.Kept = append(rep.Kept, KeptUnit{su, reason})
			continue
		}
		r.log.Info("pruned stale unit", "unit", su.ID, "kind", su.Kind, "model", su.Model, "parts", len(su.Parts), "dest", dest)
		rep.Pruned = append(rep.Pruned, su)
	}
	return rep, nil
}

// pruneUnit moves one stale unit to dest under its lock; a non-empty reason says why it was
// left in place.
func (r *runner) pruneUnit(su StaleUnit, dest string) (reason string, err error) {
	dir := filepath.Join(r.state, unitsDirName, su.ID)
	if su.Dir {
		lo := r.o.Lock
		lo.Holder = Holder{Host: r.host, PID: os.Getpid(), Started: time.Now().UTC(), Unit: su.ID}
		lock, err := TryLock(filepath.Join(dir, lockFileName), lo)
		if errors.Is(err, ErrLocked) {
			return "busy: " + err.Error(), nil
		}
		if err != nil {
			return "", err
		}
		defer func() {
			if uerr := lock.Unlock(); uerr != nil {
				r.log.Warn("releasing unit lock", "unit", su.ID, "err", uerr)
			}
		}()
		if err := os.MkdirAll(filepath.Join(dest, unitsDirName), 0o755); err != nil {
			return "", fmt.Errorf("jobs: prune: %w", err)
		}
		if err := os.Rename(dir, filepath.Join(dest, unitsDirName, su.ID)); err != nil {
			return "", fmt.Errorf("jobs: prune: moving unit %s: %w", su.ID, err)
		}
	}
	if len(su.Parts) > 0 {
		if err := os.MkdirAll(filepath.Join(dest, ResultsDirName), 0o755); err != nil {
			return "", fmt.Errorf("jobs: prune: %w", err)
		}
	}
	for _, p := range su.Parts {
		if err := os.Rename(p, filepath.Join(dest, ResultsDirName, filepath.Base(p))); err != nil {
			return "", fmt.Errorf("jobs: prune: moving results part of unit %s: %w", su.ID, err)
		}
	}
	return "", nil
}
