package jobs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/enflow/enflow/pipeline/train"
)

// Unit is one schedulable piece of work: a training run, or one evaluation of a training run
// or of a sample file. Its identity (Hash) is a content hash of its normalized spec and its
// inputs (data file contents, code version); a unit with a result in the results table is
// finished and never redone.
type Unit struct {
	ID   string // first 16 hex digits of Hash: directory and results-part names
	Hash string // SHA-256 (hex) of the identity document

	Kind    string // train, nll, energy, stability, js
	Dataset string
	Model   string // "" for standalone evaluations
	NData   int    // 0 for standalone evaluations
	Seed    int64  // training seed (also for attached evaluations); standalone: the evaluation's seed
	Label   string // standalone evaluations: e.g. "data"

	Parent *Unit  // the training unit an attached evaluation evaluates
	Group  string // shard group: the ID of the training unit (or of the standalone unit)

	Train     map[string]any  // train: normalized overrides
	Finetune  map[string]any  // train: stage-2 overrides (merged over Train), nil for one stage
	ExtraArgs []string        // train: extra enflow train arguments
	Eval      *EvaluationSpec // evaluations: the (defaulted) evaluation spec
	Samples   string          // standalone evaluations: the table evaluated (absolute)
	DataDir   string          // the ETL directory (absolute)

	Inputs []Input
	// Norm is the normalized unit spec (canonical JSON in the identity and the results).
	Norm map[string]any
	// Unsupported says why this build cannot run the unit ("" if it can).
	Unsupported string
	// InputErr is set when an input file is missing or unreadable.
	InputErr error
}

// UnitRef names a unit in the runner's reports: the manifest, the run summary and the status
// report embed it (its fields flatten into their JSON objects).
type UnitRef struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Dataset string `json:"dataset"`
	Model   string `json:"model,omitempty"`
	NData   int    `json:"n_data,omitempty"`
	Seed    int64  `json:"seed"`
	Label   string `json:"label,omitempty"`
	Parent  string `json:"parent,omitempty"` // attached evaluations: the training unit's ID
}

// Ref is the unit's UnitRef.
func (u *Unit) Ref() UnitRef {
	r := UnitRef{ID: u.ID, Kind: u.Kind, Dataset: u.Dataset, Model: u.Model, NData: u.NData, Seed: u.Seed, Label: u.Label}
	if u.Parent != nil {
		r.Parent = u.Parent.ID
	}
	return r
}

// Input is one input file of a unit, identified by content.
type Input struct {
	Role   string `json:"role"` // e.g. "train", "val", "test", "samples"
	Path   string `json:"path"` // absolute (recorded, not hashed)
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Capabilities tell the planner what this build can run.
type Capabilities struct {
	// Dataset returns nil if enflow train can train on the dataset.
	Dataset func(ds string) error
	// Model returns nil if enflow train knows the model kind.
	Model func(model string) error
	// Train, if set, returns nil if enflow train trains that model on that dataset (both
	// known), e.g. only the molecule E-NF on QM9 with atom types.
	Train func(ds, model string) error
}

// CodeInfo identifies the code that runs the units.
type CodeInfo struct {
	Version string `json:"version"` // e.g. "git:1a2b3c…" or "git:1a2b3c…+dirty" or "bin:…"
	GitRev  string `json:"git_rev"` // "" if unknown
	Dirty   bool   `json:"dirty"`
	Source  string `json:"source"` // env, buildinfo, git or binary
}

// Plan is a spec expanded into units, in execution order (each training unit is followed by
// its evaluations; standalone evaluations come last).
type Plan struct {
	Spec    *Spec
	DataDir string
	Code    CodeInfo
	Units   []*Unit
}

// PlanOptions configures Expand.
type PlanOptions struct {
	DataDir string // overrides the spec's data_dir
	Caps    Capabilities
	Code    CodeInfo
}

// identitySchema versions the identity document; changing it makes every unit new.
const identitySchema = "enflow.jobs.unit/v1"

// Expand turns a spec into units and computes their identities. Input files are hashed (each
// once per process, see hashFile); missing inputs do not fail the plan but mark the units.
func Expand(spec *Spec, o PlanOptions) (*Plan, error) {
	dataDir := o.DataDir
	if dataDir == "" {
		dataDir = spec.DataDir
	}
	if dataDir == "" {
		dataDir = "out/data"
	}
	dataDir, err := filepath.Abs(ExpandPath(dataDir))
	if err != nil {
		return nil, fmt.Errorf("jobs: data directory: %w", err)
	}
	code := o.Code.Version
	if spec.CodeIdentity == "ignore" {
		code = "any"
	}
	p := &Plan{Spec: spec, DataDir: dataDir, Code: o.Code}
	base, err := normalizeTrain(spec.Train)
	if err != nil {
		return nil, err
	}
	seen := map[string]*Unit{}
	add := func(u *Unit) error {
		if prev, dup := seen[u.Hash]; dup {
			return fmt.Errorf("jobs: spec %s: two units are identical (%s %s %s n_data=%d seed=%d): remove the duplicate",
				spec.Path, prev.Kind, prev.Dataset, prev.Model, prev.NData, prev.Seed)
		}
		seen[u.Hash] = u
		p.Units = append(p.Units, u)
		return nil
	}
	for _, ex := range spec.Experiments {
		over, err := normalizeTrain(ex.Train)
		if err != nil {
			return nil, err
		}
		tr := mergeTrain(base, over)
		var ft map[string]any
		if ex.Finetune != nil {
			fo, err := normalizeTrain(ex.Finetune)
			if err != nil {
				return nil, err
			}
			ft = mergeTrain(tr, fo)
		}
		exDir := dataDir
		if ex.DataDir != "" {
			exDir = ExpandPath(ex.DataDir)
			if !filepath.IsAbs(exDir) {
				exDir = filepath.Join(dataDir, exDir)
			}
		}
		extra := append(append([]string{}, spec.ExtraArgs...), ex.ExtraArgs...)
		for _, model := range ex.Models {
			for _, n := range ex.NData {
				for _, seed := range ex.Seeds {
					u := &Unit{Kind: KindTrain, Dataset: ex.Dataset, Model: model, NData: n, Seed: seed,
						Train: tr, Finetune: ft, ExtraArgs: extra, DataDir: exDir}
					u.Norm = map[string]any{
						"kind": KindTrain, "dataset": ex.Dataset, "model": model, "n_data": n, "seed": seed,
						"train": tr, "extra_args": extra, "backend": spec.Backend,
					}
					// Only when set, so that the identities of other units stay as they were. The
					// data_dir as written (not expanded): copying the state and data elsewhere
					// keeps the units; the data's content is hashed anyway.
					if ex.DataDir != "" {
						u.Norm["data_dir"] = ex.DataDir
					}
					if ft != nil {
						u.Norm["finetune"] = ft
					}
					u.Unsupported = unsupported(o.Caps, ex.Dataset, model)
					if u.Unsupported == "" {
						u.Inputs, u.InputErr = splitInputs(exDir, ex.Dataset)
					}
					u.identify(u.Inputs, code)
					u.Group = u.ID
					if err := add(u); err != nil {
						return nil, err
					}
					for i := range spec.Evaluations {
						ev := &spec.Evaluations[i]
						if ev.Samples != "" || !evalApplies(ev.Kind, ex.Dataset) || !filterOK(ev.Datasets, ex.Dataset) || !filterOK(ev.Models, model) {
							continue
						}
						e := &Unit{Kind: ev.Kind, Dataset: ex.Dataset, Model: model, NData: n, Seed: seed,
							Parent: u, Group: u.ID, Eval: ev, DataDir: exDir}
						e.Norm = evalNorm(ev)
						e.Norm["parent"] = u.Hash
						e.Norm["backend"] = spec.Backend
						// The parent's identity covers the data and code; energy also reads the test split.
						e.identify(nil, "")
						if err := add(e); err != nil {
							return nil, err
						}
					}
				}
			}
		}
	}
	for i := range spec.Evaluations {
		ev := &spec.Evaluations[i]
		if ev.Samples == "" {
			continue
		}
		samples, err := filepath.Abs(ExpandPath(ev.Samples))
		if err != nil {
			return nil, fmt.Errorf("jobs: samples path: %w", err)
		}
		u := &Unit{Kind: ev.Kind, Dataset: ev.Dataset, Label: ev.Label, Seed: ev.Seed, Eval: ev, Samples: samples, DataDir: dataDir}
		u.Norm = evalNorm(ev)
		u.Norm["dataset"] = ev.Dataset
		u.Norm["label"] = ev.Label
		var in Input
		in, u.InputErr = hashInput("samples", samples)
		if u.InputErr == nil {
			u.Inputs = append(u.Inputs, in)
		}
		if ev.Kind == KindEnergy && u.InputErr == nil {
			var test Input
			test, u.InputErr = hashInput("test", filepath.Join(dataDir, ev.Dataset+"_test.parquet"))
			u.Inputs = append(u.Inputs, test)
		}
		u.identify(u.Inputs, code)
		u.Group = u.ID
		if err := add(u); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func filterOK(filter []string, v string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if f == v {
			return true
		}
	}
	return false
}

func unsupported(c Capabilities, ds, model string) string {
	if c.Dataset != nil {
		if err := c.Dataset(ds); err != nil {
			return fmt.Sprintf("dataset %s: %v", ds, err)
		}
	}
	if c.Model != nil {
		if err := c.Model(model); err != nil {
			return fmt.Sprintf("model %s: %v", model, err)
		}
	}
	if c.Train != nil {
		if err := c.Train(ds, model); err != nil {
			return fmt.Sprintf("model %s on %s: %v", model, ds, err)
		}
	}
	return ""
}

// evalNorm is the normalized form of an evaluation spec (only the fields that matter).
func evalNorm(e *EvaluationSpec) map[string]any {
	m := map[string]any{"kind": e.Kind, "seed": e.Seed}
	switch e.Kind {
	case KindNLL:
		m["split"], m["batch"] = e.Split, e.Batch
	case KindEnergy:
		m["n"], m["bins"] = e.N, e.Bins
	case KindStability:
		m["n"] = e.N
	case KindJS:
		m["n"], m["n_atoms"] = e.N, e.NAtoms
	case KindESS:
		m["n"], m["temperature"] = e.N, e.Temperature
		if e.Bins != 0 {
			m["bins"] = e.Bins
		}
		if e.Energy != "" {
			m["energy"] = e.Energy
		}
	case KindStates:
		m["n"] = e.N
		if e.Energy != "" {
			m["energy"] = e.Energy
		}
	}
	if e.Samples == "" { // model settings only matter when the unit runs a model
		if e.Trace != "" {
			m["trace"] = e.Trace
		}
		if e.Solver != "" {
			m["solver"] = e.Solver
		}
		if e.RTol != 0 {
			m["rtol"] = e.RTol
		}
		if e.ATol != 0 {
			m["atol"] = e.ATol
		}
		if e.Steps != 0 {
			m["steps"] = e.Steps
		}
		if e.Kind != KindNLL && e.Batch != 0 {
			m["batch"] = e.Batch
		}
	}
	return m
}

// identify computes Hash and ID from Norm, the inputs (by role, size and content hash, not
// path) and the code version.
func (u *Unit) identify(inputs []Input, code string) {
	type in struct {
		Role   string `json:"role"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	ins := make([]in, len(inputs))
	for i, x := range inputs {
		ins[i] = in{x.Role, x.Size, x.SHA256}
	}
	doc := map[string]any{"schema": identitySchema, "unit": u.Norm, "inputs": ins}
	if code != "" {
		doc["code"] = code
	}
	b, _ := json.Marshal(doc) // maps of JSON-safe values: cannot fail
	sum := sha256.Sum256(b)
	u.Hash = hex.EncodeToString(sum[:])
	u.ID = u.Hash[:16]
}

// NormJSON is the canonical JSON of the unit's normalized spec.
func (u *Unit) NormJSON() string {
	b, _ := json.Marshal(u.Norm)
	return string(b)
}

// shardKey is the 64-bit number a unit's group hashes to.
func (u *Unit) shardKey() uint64 {
	b, err := hex.DecodeString(u.Group)
	if err != nil || len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b[:8])
}

// Shard is a deterministic 1/Count slice of the units: unit groups (a training unit with its
// evaluations) are assigned by hash modulo Count.
type Shard struct {
	Index, Count int
}

// ParseShard parses "i/n" with 0 ≤ i < n.
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{0, 1}, nil
	}
	var sh Shard
	if _, err := fmt.Sscanf(s, "%d/%d", &sh.Index, &sh.Count); err != nil || fmt.Sprintf("%d/%d", sh.Index, sh.Count) != s {
		return Shard{}, fmt.Errorf("shard %q: want i/n, e.g. 0/4", s)
	}
	if sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count {
		return Shard{}, fmt.Errorf("shard %q: want 0 ≤ i < n", s)
	}
	return sh, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Contains reports whether u belongs to the shard.
func (s Shard) Contains(u *Unit) bool {
	if s.Count <= 1 {
		return true
	}
	return u.shardKey()%uint64(s.Count) == uint64(s.Index)
}

// splitInputs are the train/val/test ETL files of a dataset trained by enflow train:
// {ds}_{train,val,test}.parquet for DW4/LJ13, and the QM9 ETL's names
// {qm9_positional,qm9,molecules}_{train,valid,test}.parquet for the molecule datasets.
func splitInputs(dir, ds string) ([]Input, error) {
	path := func(split string) string { return filepath.Join(dir, ds+"_"+split+".parquet") }
	switch {
	case ds == DatasetQM9Positional:
		path = func(split string) string { return train.MoleculeSplitPath(dir, "qm9_positional", split) }
	case hasAtomTypes(ds):
		path = func(split string) string { return train.MoleculeSplitPath(dir, ds, split) }
	}
	var out []Input
	for _, split := range []string{"train", "val", "test"} {
		in, err := hashInput(split, path(split))
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

var (
	hashMu    sync.Mutex
	hashCache = map[string]hashEntry{}
)

type hashEntry struct {
	size  int64
	mtime int64
	sum   string
}

// hashInput returns the SHA-256 of a file. Results are cached per process by (path, size,
// modification time), so a plan over many units reads each data file once.
func hashInput(role, path string) (Input, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Input{Role: role, Path: path}, fmt.Errorf("input %s: %w", role, err)
	}
	if fi.IsDir() {
		return Input{Role: role, Path: path}, fmt.Errorf("input %s: %s is a directory", role, path)
	}
	hashMu.Lock()
	e, ok := hashCache[path]
	hashMu.Unlock()
	if ok && e.size == fi.Size() && e.mtime == fi.ModTime().UnixNano() {
		return Input{Role: role, Path: path, Size: e.size, SHA256: e.sum}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Input{Role: role, Path: path}, fmt.Errorf("input %s: %w", role, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Input{Role: role, Path: path}, fmt.Errorf("input %s: reading %s: %w", role, path, err)
	}
	e = hashEntry{size: n, mtime: fi.ModTime().UnixNano(), sum: hex.EncodeToString(h.Sum(nil))}
	hashMu.Lock()
	hashCache[path] = e
	hashMu.Unlock()
	return Input{Role: role, Path: path, Size: e.size, SHA256: e.sum}, nil
}
