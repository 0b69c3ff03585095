package reports

// What a state directory's unit directories add to its results (pipeline/jobs runner.go
// documents the layout): the epochs each training run planned (run/run.json), and for a
// training unit without a results part — interrupted mid-run, or still running — its
// progress so far, read from run/metrics.csv.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/pipeline/jobs"
	"github.com/enflow/enflow/pipeline/train"
)

// The parts of a state directory read here (pipeline/jobs: STATE/units/<unit>/unit.json,
// attempts.jsonl and run/, the enflow train run directory of stage 1).
const (
	unitsDir     = "units"
	unitDocName  = "unit.json"
	attemptsFile = "attempts.jsonl"
	runDir       = "run"
)

// stateRuns is what the unit directories of the state directories hold beyond the results.
type stateRuns struct {
	planned map[string]int // unit ID → epochs its run planned (run.json schedule)
	partial []*unitRec     // training units without a results part, from their metrics.csv
}

// unitDocument is the part of a unit's unit.json read here.
type unitDocument struct {
	ID       string         `json:"id"`
	Hash     string         `json:"hash"`
	Spec     string         `json:"spec"`
	SpecPath string         `json:"spec_path"`
	Parent   string         `json:"parent"`
	Unit     map[string]any `json:"unit"`
	Code     struct {
		Version string `json:"version"`
		GitRev  string `json:"git_rev"`
	} `json:"code"`
}

// readStateRuns scans the unit directories of state (a state directory). finished holds the
// IDs of units with results (their rows); partial units that the manifest of their spec no
// longer lists (stale) are left out unless allUnits.
func readStateRuns(state string, finished map[string]bool, allUnits bool, into *stateRuns) error {
	entries, err := os.ReadDir(filepath.Join(state, unitsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reports: listing units: %w", err)
	}
	manifests, err := jobs.ReadManifests(state)
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(state, unitsDir, e.Name())
		doc, ok := readUnitDocument(dir)
		if !ok || doc.ID != e.Name() || doc.Parent != "" || str(doc.Unit, "kind") != jobs.KindTrain {
			continue
		}
		run := filepath.Join(dir, runDir)
		if info, err := train.LoadRunInfo(run); err == nil && info.Schedule.Epochs > 0 {
			into.planned[doc.ID] = info.Schedule.Epochs
		}
		if finished[doc.ID] || (!allUnits && staleIn(manifests, doc)) {
			continue
		}
		u, err := partialUnit(state, dir, doc)
		if err != nil {
			return err
		}
		if u != nil {
			into.partial = append(into.partial, u)
		}
	}
	return nil
}

func readUnitDocument(dir string) (*unitDocument, bool) {
	b, err := os.ReadFile(filepath.Join(dir, unitDocName))
	if err != nil {
		return nil, false
	}
	var doc unitDocument
	if json.Unmarshal(b, &doc) != nil {
		return nil, false
	}
	return &doc, true
}

// staleIn reports whether the manifest of doc's spec exists and does not list the unit.
func staleIn(manifests map[string]*jobs.Manifest, doc *unitDocument) bool {
	m, ok := manifests[doc.Spec]
	if !ok {
		return false
	}
	for _, u := range m.Units {
		if u.ID == doc.ID {
			return false
		}
	}
	return true
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func num(m map[string]any, key string, null int64) int64 {
	if v, ok := m[key].(float64); ok {
		return int64(v)
	}
	return null
}

// partialUnit builds the record of a training unit without results from its run directory:
// the test NLL at the best validation epoch so far (both conventions), the epochs completed
// and the curve. nil when the run has no epochs yet or belongs to no table (a Boltzmann-
// generator variant: objective, finetune stage or own data).
func partialUnit(state, dir string, doc *unitDocument) (*unitRec, error) {
	spec, err := json.Marshal(doc.Unit)
	if err != nil {
		return nil, fmt.Errorf("reports: unit %s: %w", doc.ID, err)
	}
	if trainVariant(string(spec)) != "" {
		return nil, nil
	}
	run := filepath.Join(dir, runDir)
	ms, err := train.ReadMetricsCSV(run)
	if err != nil {
		return nil, fmt.Errorf("reports: unit %s: %w", doc.ID, err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	last := ms[len(ms)-1]
	recorded := time.Time{}
	if fi, err := os.Stat(filepath.Join(run, train.MetricsCSV)); err == nil {
		recorded = fi.ModTime()
	}
	attempt, host := lastAttempt(dir)
	first := jobs.Row{Unit: doc.ID, UnitHash: doc.Hash, SpecName: doc.Spec, SpecPath: doc.SpecPath, UnitKind: jobs.KindTrain,
		Dataset: str(doc.Unit, "dataset"), Model: str(doc.Unit, "model"), Label: str(doc.Unit, "label"),
		NData: num(doc.Unit, "n_data", 0), Seed: num(doc.Unit, "seed", -1), UnitSpec: string(spec),
		Artifact: filepath.ToSlash(filepath.Join(unitsDir, doc.ID, runDir)), Code: doc.Code.Version, GitRev: doc.Code.GitRev,
		Host: host, Attempt: attempt, WallS: math.NaN(), RecordedAt: recorded}
	u := &unitRec{first: first, metrics: map[string]jobs.Row{}, recorded: recorded, partial: true}
	set := func(metric string, v float64) {
		r := first
		r.Metric, r.Value = metric, v
		u.metrics[metric] = r
	}
	set("test_nll", last.BestTestNLL)
	set("best_val_nll", last.BestValNLL)
	set("epochs", float64(last.Epoch+1))
	set("best_epoch", math.NaN())
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].ValNLL == last.BestValNLL {
			set("best_epoch", float64(ms[i].Epoch))
			break
		}
	}
	if s, err := train.LoadModelSpec(run); err == nil && s.DensityDims() > 0 {
		set("nll_dims", float64(s.DensityDims()))
		set("test_nll_without_normaliser", last.BestTestNLL-s.GaussianNormaliser())
		set("best_val_nll_without_normaliser", last.BestValNLL-s.GaussianNormaliser())
	}
	c := jobs.Curve{}
	opt := func(v float64) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		return &v
	}
	for _, m := range ms {
		c.Epoch = append(c.Epoch, int64(m.Epoch))
		c.Step = append(c.Step, m.Step)
		c.TrainNLL = append(c.TrainNLL, opt(m.TrainNLL))
		c.ValNLL = append(c.ValNLL, opt(m.ValNLL))
		c.TestNLL = append(c.TestNLL, opt(m.TestNLL))
		c.WallS = append(c.WallS, opt(m.WallS))
	}
	if b, err := json.Marshal(c); err == nil {
		r := first
		r.Metric, r.Value, r.Detail = "curve", math.NaN(), string(b)
		u.metrics["curve"] = r
	}
	return u, nil
}

// lastAttempt returns the number and host of the unit's latest attempt (attempts.jsonl;
// 0 and "" without one).
func lastAttempt(dir string) (int64, string) {
	f, err := os.Open(filepath.Join(dir, attemptsFile))
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	var n int64
	var host string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a struct {
			Attempt int64  `json:"attempt"`
			Host    string `json:"host"`
		}
		if json.Unmarshal(sc.Bytes(), &a) == nil && a.Attempt >= n {
			n, host = a.Attempt, a.Host
		}
	}
	return n, host
}

// protocolEpochs is the number of epochs of the paper's schedule for a dataset and n_data
// (REFERENCE §1.4, train.DefaultSchedule), 0 when the paper has none for that n_data.
func protocolEpochs(dataset string, nData int64) int {
	sys, err := particles.SystemByName(dataset)
	if err != nil {
		return 0
	}
	s, exact, err := train.DefaultSchedule(sys.Name, int(nData))
	if err != nil || !exact {
		return 0
	}
	return s.Epochs
}

// gaussianNormaliser is ½·(N−1)·D·ln 2π of a particle dataset's mean-free prior (the offset
// between the two NLL conventions for the paper's models), NaN for other datasets.
func gaussianNormaliser(dataset string) float64 {
	sys, err := particles.SystemByName(dataset)
	if err != nil {
		return math.NaN()
	}
	s := train.ModelSpec{Kind: "enf", System: sys.Name, Nodes: sys.Particles, Dim: sys.Dim}
	return s.GaussianNormaliser()
}
