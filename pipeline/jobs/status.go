package jobs

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/enflow/enflow/pipeline/train"
)

// Unit states reported by StatusOf (besides the Outcome* values done, blocked, unsupported,
// missing-input and gave-up).
const (
	StateRunning = "running" // its lock is held by a scheduler
	StatePartial = "partial" // a checkpoint or samples exist: the next run resumes
	StateFailed  = "failed"  // failed before; will be retried (fewer than max_attempts failures)
	StatePending = "pending" // never started
)

// UnitStatus is one unit's line in a StatusReport.
type UnitStatus struct {
	UnitRef
	InShard  bool               `json:"in_shard"`
	State    string             `json:"state"`
	Detail   string             `json:"detail,omitempty"`
	Attempts int                `json:"attempts"`
	Part     string             `json:"part,omitempty"`
	Values   map[string]float64 `json:"values,omitempty"` // done units: the main numbers
}

// StatusReport lists every unit of a spec and its state.
type StatusReport struct {
	Spec     string         `json:"spec"`
	SpecPath string         `json:"spec_path"`
	StateDir string         `json:"state_dir"`
	DataDir  string         `json:"data_dir"`
	Shard    string         `json:"shard"`
	Code     string         `json:"code_version"`
	Counts   map[string]int `json:"counts"`
	Units    []UnitStatus   `json:"units"`
	// Stale are the units of the spec in the state directory that are not in this plan (an
	// earlier version of the spec, its data or the code): enflow report leaves out those not
	// in the spec's manifest, and Prune moves them aside.
	Stale []StaleUnit `json:"stale_units"`
}

// mainMetrics are the values StatusOf shows for done units, per kind.
var mainMetrics = map[string][]string{
	KindTrain:     {"test_nll", "best_val_nll", "epochs"},
	KindNLL:       {"nll"},
	KindEnergy:    {"mean_energy", "data_mean_energy"},
	KindStability: {"atom_stable", "mol_stable"},
	KindJS:        {"js"},
}

// StatusOf reports the state of every unit of the spec (all shards; InShard marks those of
// o.Shard) without running or changing anything, except that probing a lock briefly takes it.
func StatusOf(ctx context.Context, o Options) (*StatusReport, error) {
	r, err := newRunner(o)
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{Spec: o.Spec.Name, SpecPath: o.Spec.Path, StateDir: r.state, DataDir: r.plan.DataDir,
		Shard: r.o.Shard.String(), Code: o.Code.Version, Counts: map[string]int{}}
	state := map[string]string{}
	for _, u := range r.plan.Units {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		st := UnitStatus{UnitRef: u.Ref(), InShard: r.o.Shard.Contains(u)}
		dir := r.unitDir(u)
		attempts, _ := readAttempts(dir)
		started, failed, killed, last := attemptStats(attempts)
		st.Attempts = started
		switch {
		case u.Unsupported != "":
			st.State, st.Detail = OutcomeUnsupported, u.Unsupported
		case u.InputErr != nil:
			st.State, st.Detail = OutcomeMissingInput, u.InputErr.Error()
		case r.finished[u.ID] != "":
			st.State, st.Part = OutcomeDone, r.finished[u.ID]
			st.Values = partValues(r.finished[u.ID], mainMetrics[u.Kind])
		default:
			lo := r.o.Lock
			if held, who := Probe(filepath.Join(dir, lockFileName), lo); held {
				st.State, st.Detail = StateRunning, who
				break
			}
			if failed > 0 {
				st.State = StateFailed
				if failed >= o.Spec.MaxAttempts {
					st.State = OutcomeGaveUp
				}
				st.Detail = firstLine(last.Error)
			}
			if st.State == "" || st.State == StateFailed {
				if d := partialDetail(u, dir); d != "" {
					if killed > 0 {
						d += fmt.Sprintf("; %d attempt(s) killed", killed)
					}
					st.State, st.Detail = StatePartial, d
				}
			}
			if st.State == "" && u.Parent != nil && state[u.Parent.ID] != OutcomeDone {
				st.State, st.Detail = OutcomeBlocked, "training unit "+u.Parent.ID+" is "+state[u.Parent.ID]
			}
			if st.State == "" {
				st.State = StatePending
			}
		}
		state[u.ID] = st.State
		rep.Counts[st.State]++
		rep.Units = append(rep.Units, st)
	}
	if rep.Stale, _, err = r.staleUnits(); err != nil {
		return nil, err
	}
	return rep, nil
}

// partialDetail describes resumable work left by an earlier attempt ("" if none).
func partialDetail(u *Unit, dir string) string {
	if u.Kind == KindTrain {
		run := filepath.Join(dir, runDirName)
		complete, resumable := trainState(run)
		stage := ""
		if u.Finetune != nil {
			stage = "stage 1: "
			if complete {
				// Stage 1 is done: the unit's progress is stage 2's.
				run, stage = filepath.Join(dir, finetuneDirName), "stage 2: "
				complete, resumable = trainState(run)
				if !complete && !resumable {
					return "stage 1 complete"
				}
			}
		}
		switch {
		case complete:
			return "training complete, results not recorded yet"
		case resumable:
			if n, err := countRows(filepath.Join(run, train.MetricsParquet)); err == nil {
				return stage + strconv.Itoa(n) + " epoch(s) checkpointed"
			}
			return stage + "checkpointed"
		}
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, samplesName)); err == nil {
		return "samples drawn"
	}
	return ""
}

// partValues reads the named metrics of a results part (missing ones are left out).
func partValues(part string, names []string) map[string]float64 {
	rows, err := ReadResultsFile(part)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, r := range rows {
		for _, n := range names {
			if r.Metric == n && !math.IsNaN(r.Value) {
				out[n] = r.Value
			}
		}
	}
	return out
}
