package jobs

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/pipeline/train"
)

// Spec is a declarative job spec (a TOML file, see the package documentation and
// jobs/README.md).
type Spec struct {
	// Name names the spec in the results table (default: the file name without extension).
	Name        string `toml:"name"`
	Description string `toml:"description"`
	// DataDir is the ETL output directory holding {dataset}_{train,val,test}.parquet. Relative
	// paths are taken from the working directory; ${VAR} and ${VAR:-default} are expanded.
	DataDir string `toml:"data_dir"`
	// StateDir is the default state directory (units, locks, run directories, results/).
	// Default: out/jobs/<name>.
	StateDir string `toml:"state_dir"`
	// Backend is passed to enflow train/eval/sample as --backend ("" = $GOMLX_BACKEND, else
	// SimpleGo). It is part of every unit's identity.
	Backend string `toml:"backend"`
	// CodeIdentity decides whether the code version is part of a unit's identity: "revision"
	// (default: a new git revision makes every unit new) or "ignore" (the version is recorded
	// in the results but finished units stay finished across code changes).
	CodeIdentity string `toml:"code_identity"`
	// MaxAttempts is how often a failing unit is tried before jobs run skips it (default 3;
	// --retry-failed tries again).
	MaxAttempts int `toml:"max_attempts"`
	// Train holds training overrides for every experiment: enflow train flag names (without
	// "--"; "_" may replace "-") to values.
	Train map[string]any `toml:"train"`
	// ExtraArgs are appended verbatim to every enflow train command line (escape hatch for
	// flags the runner does not know).
	ExtraArgs   []string         `toml:"extra_args"`
	Experiments []ExperimentSpec `toml:"experiment"`
	Evaluations []EvaluationSpec `toml:"evaluation"`

	// Path is the absolute path of the spec file (set by LoadSpec).
	Path string `toml:"-"`
}

// ExperimentSpec is one [[experiment]] table: the cross product datasets × models × n_data ×
// seeds of training units.
type ExperimentSpec struct {
	Name      string         `toml:"name"`
	Dataset   string         `toml:"dataset"`
	Models    []string       `toml:"models"`
	NData     []int          `toml:"n_data"`
	Seeds     []int64        `toml:"seeds"`
	Train     map[string]any `toml:"train"`
	ExtraArgs []string       `toml:"extra_args"`
	// DataDir overrides the spec's data_dir for this experiment. A relative path is taken
	// below the spec's data directory (or --data), so --data still relocates every input;
	// ${VAR} is expanded. When set, it is part of the identity of the experiment's units.
	DataDir string `toml:"data_dir"`
	// Finetune, when set, makes every training unit of the experiment a two-stage unit: the
	// run is trained as usual (stage 1, run/), then a second run (stage 2, finetune/) starts
	// from its weights (enflow train --init-from) with the experiment's training overrides
	// overridden again by these, e.g. { objective = "ml+kl", lambda = "1.0:0.5", epochs = 20 }.
	// Attached evaluations evaluate stage 2. Part of the units' identity.
	Finetune map[string]any `toml:"finetune"`
}

// EvaluationSpec is one [[evaluation]] table. Without Samples it is attached to every training
// unit it applies to (filtered by Datasets and Models); with Samples it is a standalone unit
// evaluating that file (e.g. the data themselves, labelled "data").
type EvaluationSpec struct {
	Kind     string   `toml:"kind"`     // nll | energy | stability | js | ess | states
	Datasets []string `toml:"datasets"` // attached: only these datasets (default: all it applies to)
	Models   []string `toml:"models"`   // attached: only these models (default: all)
	Samples  string   `toml:"samples"`  // standalone: the table to evaluate
	Dataset  string   `toml:"dataset"`  // standalone: the dataset the table belongs to
	Label    string   `toml:"label"`    // standalone: a label for the results (default "data")
	N        int      `toml:"n"`        // samples to draw (default 1000); samples files: first n only (0 = all)
	Seed     int64    `toml:"seed"`     // sampling / Hutchinson seed (default 1)
	Split    string   `toml:"split"`    // nll: test (default), val or train
	Trace    string   `toml:"trace"`    // nll: exact | hutchinson (default: the run's)
	Solver   string   `toml:"solver"`   // nll, sampling: ODE solver override
	RTol     float64  `toml:"rtol"`     // nll, sampling: tolerance overrides
	ATol     float64  `toml:"atol"`
	Steps    int      `toml:"steps"`   // nll, sampling: fixed-step solver steps
	Batch    int      `toml:"batch"`   // nll, sampling: batch size (default 100)
	NAtoms   int      `toml:"n_atoms"` // js: molecules with this many atoms (default 19)
	Bins     int      `toml:"bins"`    // energy: histogram bins (default 60); ess: energy histograms (default 0: none)
	// Energy and Temperature define the target exp(−u/T) of ess (and the energy minimised by
	// states): default the dataset's own energy and T = 1.
	Energy      string  `toml:"energy"`
	Temperature float64 `toml:"temperature"`
}

// Evaluation kinds.
const (
	KindTrain     = "train"
	KindNLL       = "nll"
	KindEnergy    = "energy"
	KindStability = "stability"
	KindJS        = "js"
	KindESS       = "ess"    // importance weights of flow samples (Boltzmann generators)
	KindStates    = "states" // minimised samples: distinct metastable states
)

// evalKinds lists the evaluation kinds (for messages).
var evalKinds = []string{KindNLL, KindEnergy, KindStability, KindJS, KindESS, KindStates}

// Datasets the spec may name. Whether this build can train a model on one is decided at run
// time (Capabilities).
const (
	DatasetDW4           = "dw4"
	DatasetLJ13          = "lj13"
	DatasetQM9           = "qm9"            // atom types, charges and positions (Table 2)
	DatasetQM9Positional = "qm9-positional" // 19-atom QM9 molecules, positions only (Table 3)
	DatasetMolecules     = "molecules"      // a user's own molecules (enflow etl molecules)
)

var knownDatasets = []string{DatasetDW4, DatasetLJ13, DatasetQM9, DatasetQM9Positional, DatasetMolecules}

// isParticle reports whether ds is a particle system (DW4, LJ13).
func isParticle(ds string) bool { return ds == DatasetDW4 || ds == DatasetLJ13 }

// hasAtomTypes reports whether ds holds molecules with atom types (QM9 or a user's own): the
// molecule systems of enflow train.
func hasAtomTypes(ds string) bool { return train.IsMoleculeSystem(ds) }

// isMolecular reports whether ds is a QM9 variant.
func isMolecular(ds string) bool { return ds == DatasetQM9 || ds == DatasetQM9Positional }

// evalApplies reports whether an evaluation kind makes sense for a dataset.
func evalApplies(kind, ds string) bool {
	switch kind {
	case KindNLL:
		return true
	case KindEnergy, KindESS, KindStates:
		return isParticle(ds)
	case KindStability:
		return hasAtomTypes(ds)
	case KindJS:
		return isMolecular(ds)
	}
	return false
}

// flagType is the type of an enflow train flag the spec may override.
type flagType int

const (
	flagInt flagType = iota
	flagFloat
	flagString
	flagBool
	flagText // a string; numbers are accepted and kept in their shortest form (lambda = 0.5)
)

// trainFlags are the enflow train flags a spec may set. The runner owns --dataset, --data,
// --out, --n-data, --seed, --model, --backend, --resume, --json and --no-progress.
var trainFlags = map[string]flagType{
	"epochs": flagInt, "test-every": flagInt, "batch": flagInt, "eval-batch": flagInt,
	"hidden": flagInt, "layers": flagInt, "steps": flagInt, "max-steps-per-epoch": flagInt,
	"eval-n": flagInt, "keep": flagInt, "js-samples": flagInt, "stability-samples": flagInt,
	"lr": flagFloat, "wd": flagFloat, "rtol": flagFloat, "atol": flagFloat, "reg": flagFloat, "clip-grad": flagFloat,
	"dtype": flagString, "solver": flagString, "trace": flagString, "noise": flagString,
	"grad": flagString, "val-trace": flagString, "test-trace": flagString, "clip-adaptive": flagBool,
	// Boltzmann-generator training (Köhler, Klein & Noé): objective ml | kl | ml+kl, the ML
	// weight λ (constant or start:end over the epochs), the target energy and temperature, and
	// the flow samples per KL step.
	"objective": flagString, "lambda": flagText, "energy": flagString, "temperature": flagFloat, "kl-samples": flagInt,
	"energy-cut": flagFloat,  // linlogcut of u above this energy (kl / ml+kl; checked by enflow train)
	"init-which": flagString, // finetune only: stage 1's checkpoint stage 2 starts from (best | last)
}

// runnerFlags are the train flags the runner sets itself (init-from: by the finetune stage).
var runnerFlags = []string{"dataset", "data", "out", "n-data", "seed", "model", "backend", "resume", "json", "no-progress", "init-from"}

// SpecError is a problem in a spec file; it names the file and, when known, the line.
type SpecError struct {
	Path string
	Line int
	Msg  string
}

func (e *SpecError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("jobs: spec %s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("jobs: spec %s: %s", e.Path, e.Msg)
}

// LoadSpec reads and validates a TOML job spec. Unknown keys are errors (a typo must not
// silently change an experiment).
func LoadSpec(path string) (*Spec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("jobs: spec %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("jobs: reading spec: %w", err)
	}
	return ParseSpec(abs, data)
}

// ParseSpec parses and validates spec text; path is used for messages and Spec.Path.
func ParseSpec(path string, data []byte) (*Spec, error) {
	s := &Spec{}
	md, err := toml.Decode(string(data), s)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &SpecError{Path: path, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &SpecError{Path: path, Msg: err.Error()}
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			// Keys below [train] tables are checked by normalizeTrain with a better message.
			if len(k) >= 2 && (k[0] == "train" || (k[0] == "experiment" && len(k) >= 3 && (k[1] == "train" || k[1] == "finetune"))) {
				continue
			}
			keys = append(keys, k.String())
		}
		if len(keys) > 0 {
			return nil, &SpecError{Path: path, Msg: fmt.Sprintf("unknown keys %s", strings.Join(keys, ", "))}
		}
	}
	s.Path = path
	if err := s.validate(); err != nil {
		return nil, &SpecError{Path: path, Msg: err.Error()}
	}
	return s, nil
}

func (s *Spec) validate() error {
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
	}
	switch s.CodeIdentity {
	case "":
		s.CodeIdentity = "revision"
	case "revision", "ignore":
	default:
		return fmt.Errorf("code_identity %q: want revision or ignore", s.CodeIdentity)
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = 3
	}
	if s.MaxAttempts < 0 {
		return fmt.Errorf("max_attempts %d must be positive", s.MaxAttempts)
	}
	base, err := normalizeTrain(s.Train)
	if err != nil {
		return fmt.Errorf("[train]: %w", err)
	}
	if len(s.Experiments) == 0 && len(s.Evaluations) == 0 {
		return fmt.Errorf("no [[experiment]] and no [[evaluation]]")
	}
	for i := range s.Experiments {
		if err := s.Experiments[i].validate(base); err != nil {
			return fmt.Errorf("experiment %d: %w", i+1, err)
		}
	}
	for i := range s.Evaluations {
		if err := s.Evaluations[i].validate(); err != nil {
			return fmt.Errorf("evaluation %d (%s): %w", i+1, s.Evaluations[i].Kind, err)
		}
	}
	return nil
}

func checkDataset(ds string) error {
	if !slices.Contains(knownDatasets, ds) {
		return fmt.Errorf("unknown dataset %q (known: %s)", ds, strings.Join(knownDatasets, ", "))
	}
	return nil
}

func (e *ExperimentSpec) validate(base map[string]any) error {
	if err := checkDataset(e.Dataset); err != nil {
		return err
	}
	if len(e.Models) == 0 {
		return fmt.Errorf("no models")
	}
	for _, m := range e.Models {
		if m == "" || strings.ContainsAny(m, " \t/") {
			return fmt.Errorf("bad model name %q", m)
		}
	}
	if hasDup(e.Models) {
		return fmt.Errorf("models %v list a model twice", e.Models)
	}
	if len(e.NData) == 0 {
		return fmt.Errorf("no n_data")
	}
	for _, n := range e.NData {
		if n <= 0 {
			return fmt.Errorf("n_data %d must be positive", n)
		}
	}
	if hasDup(e.NData) {
		return fmt.Errorf("n_data %v lists a value twice", e.NData)
	}
	if len(e.Seeds) == 0 {
		e.Seeds = []int64{1}
	}
	for _, sd := range e.Seeds {
		if sd < 0 {
			return fmt.Errorf("seed %d must be ≥ 0", sd)
		}
	}
	if hasDup(e.Seeds) {
		return fmt.Errorf("seeds %v list a seed twice", e.Seeds)
	}
	over, err := normalizeTrain(e.Train)
	if err != nil {
		return fmt.Errorf("[experiment.train]: %w", err)
	}
	tr := mergeTrain(base, over)
	if err := checkEnergyFlags(tr, e.Dataset); err != nil {
		return fmt.Errorf("training overrides: %w", err)
	}
	if _, ok := tr["init-which"]; ok {
		return fmt.Errorf("init-which belongs in the finetune table (it picks the stage-1 checkpoint stage 2 starts from)")
	}
	if e.DataDir != "" && strings.TrimSpace(ExpandPath(e.DataDir)) == "" {
		return fmt.Errorf("data_dir %q expands to nothing", e.DataDir)
	}
	if e.Finetune != nil {
		if len(e.Finetune) == 0 {
			return fmt.Errorf("finetune: empty table (give at least the overrides of the second stage, e.g. objective = \"ml+kl\")")
		}
		ft, err := normalizeTrain(e.Finetune)
		if err != nil {
			return fmt.Errorf("finetune: %w", err)
		}
		if err := checkEnergyFlags(mergeTrain(tr, ft), e.Dataset); err != nil {
			return fmt.Errorf("finetune: %w", err)
		}
		if w, ok := ft["init-which"].(string); ok && w != "best" && w != "last" {
			return fmt.Errorf("finetune: init-which %q: want best or last", w)
		}
	}
	return nil
}

// checkEnergyFlags validates the Boltzmann-generator flags of merged training overrides for a
// dataset the way enflow train does before it creates a run directory (cheap: no data read).
func checkEnergyFlags(tr map[string]any, ds string) error {
	var eo train.EnergyOptions
	set := false
	if v, ok := tr["objective"].(string); ok {
		obj, err := train.ParseObjective(v)
		if err != nil {
			return fmt.Errorf("objective: %w", err)
		}
		eo.Objective, set = obj, true
	}
	if v, ok := tr["lambda"].(string); ok {
		if _, err := train.ParseLambda(v); err != nil {
			return fmt.Errorf("lambda: %w", err)
		}
	}
	if v, ok := tr["temperature"].(float64); ok {
		if !(v > 0) {
			return fmt.Errorf("temperature %v must be > 0", v)
		}
		eo.Temperature, set = v, true
	}
	if v, ok := tr["energy"].(string); ok {
		eo.Energy, set = v, true
	}
	switch {
	case !set:
		return nil
	case !isParticle(ds):
		return fmt.Errorf("objective, energy and temperature are for the particle datasets (dw4, lj13), not %s", ds)
	}
	return eo.Validate(ds)
}

func hasDup[T comparable](xs []T) bool {
	seen := make(map[T]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return true
		}
		seen[x] = true
	}
	return false
}

func (e *EvaluationSpec) validate() error {
	switch {
	case e.Kind == "":
		return fmt.Errorf("kind is required (%s)", strings.Join(evalKinds, ", "))
	case !slices.Contains(evalKinds, e.Kind):
		return fmt.Errorf("unknown kind %q (want %s)", e.Kind, strings.Join(evalKinds, ", "))
	}
	if e.Samples != "" {
		if e.Kind == KindNLL || e.Kind == KindESS {
			return fmt.Errorf("samples: an %s evaluation needs a trained model, not a sample file", e.Kind)
		}
		if e.Dataset == "" {
			return fmt.Errorf("samples %q needs dataset", e.Samples)
		}
		if err := checkDataset(e.Dataset); err != nil {
			return err
		}
		if !evalApplies(e.Kind, e.Dataset) {
			return fmt.Errorf("%s does not apply to dataset %s", e.Kind, e.Dataset)
		}
		if e.Label == "" {
			e.Label = "data"
		}
		if len(e.Datasets) > 0 || len(e.Models) > 0 {
			return fmt.Errorf("datasets/models filter attached evaluations; a samples evaluation has dataset instead")
		}
	} else {
		if e.Dataset != "" || e.Label != "" {
			return fmt.Errorf("dataset and label are for samples evaluations; use datasets = [...] to filter")
		}
		for _, ds := range e.Datasets {
			if err := checkDataset(ds); err != nil {
				return err
			}
			if !evalApplies(e.Kind, ds) {
				return fmt.Errorf("%s does not apply to dataset %s", e.Kind, ds)
			}
		}
	}
	if e.N < 0 || e.Batch < 0 || e.Steps < 0 || e.Bins < 0 || e.NAtoms < 0 || e.Seed < 0 {
		return fmt.Errorf("n, batch, steps, bins, n_atoms and seed must be ≥ 0")
	}
	if e.RTol < 0 || e.ATol < 0 {
		return fmt.Errorf("rtol and atol must be ≥ 0")
	}
	switch e.Split {
	case "", "test", "val", "train":
	default:
		return fmt.Errorf("split %q: want test, val or train", e.Split)
	}
	if e.Split != "" && e.Kind != KindNLL {
		return fmt.Errorf("split is an nll option")
	}
	if e.NAtoms != 0 && e.Kind != KindJS {
		return fmt.Errorf("n_atoms is a js option")
	}
	if e.Bins != 0 && e.Kind != KindEnergy && e.Kind != KindESS {
		return fmt.Errorf("bins is an energy and ess option")
	}
	if (e.Energy != "" || e.Temperature != 0) && e.Kind != KindESS && e.Kind != KindStates {
		return fmt.Errorf("energy and temperature are ess options (energy also states)")
	}
	if e.Temperature != 0 && e.Kind != KindESS {
		return fmt.Errorf("temperature is an ess option")
	}
	if e.Temperature < 0 || math.IsNaN(e.Temperature) || math.IsInf(e.Temperature, 0) {
		return fmt.Errorf("temperature %v must be finite and > 0", e.Temperature)
	}
	if e.Energy != "" {
		dss := e.Datasets
		if e.Dataset != "" {
			dss = []string{e.Dataset}
		}
		for _, ds := range dss {
			if _, err := energy.ForSystem(ds, e.Energy); err != nil {
				return fmt.Errorf("energy %q for %s: %w", e.Energy, ds, err)
			}
		}
	}
	switch {
	case e.Trace == "":
	case e.Kind == KindESS:
		// sample --log-weights: exact divergence, or the analytic one of kernel dynamics.
		if e.Trace != cnf.TraceExact && e.Trace != cnf.TraceAnalytic {
			return fmt.Errorf("trace %q: ess wants exact or analytic", e.Trace)
		}
	case e.Trace != cnf.TraceExact && e.Trace != cnf.TraceHutchinson:
		return fmt.Errorf("trace %q: want exact or hutchinson", e.Trace)
	}
	// Defaults (part of the normalized spec, hence of the identity).
	if e.Seed == 0 {
		e.Seed = 1
	}
	switch e.Kind {
	case KindNLL:
		if e.Split == "" {
			e.Split = "test"
		}
		if e.Batch == 0 {
			e.Batch = 100
		}
	case KindEnergy:
		if e.Bins == 0 {
			e.Bins = 60
		}
	case KindJS:
		if e.NAtoms == 0 {
			e.NAtoms = 19
		}
	case KindESS:
		if e.Temperature == 0 {
			e.Temperature = 1
		}
	}
	// Samples drawn by attached evaluations; a samples file is evaluated whole unless n is set.
	if e.N == 0 && e.Samples == "" && e.Kind != KindNLL {
		e.N = 1000
	}
	return nil
}

// normalizeTrain checks training overrides against trainFlags and returns them keyed by flag
// name with values of the flag's Go type (int64, float64, string).
func normalizeTrain(in map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(in))
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		if slices.Contains(runnerFlags, name) {
			return nil, fmt.Errorf("%q is set by the runner (use the experiment's dataset/models/n_data/seeds, or the spec's backend)", k)
		}
		t, ok := trainFlags[name]
		if !ok {
			known := make([]string, 0, len(trainFlags))
			for f := range trainFlags {
				known = append(known, f)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("unknown training override %q (known: %s; anything else goes to extra_args)", k, strings.Join(known, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("training override %q given twice (with - and _)", name)
		}
		v, err := convertFlag(t, in[k])
		if err != nil {
			return nil, fmt.Errorf("training override %q: %w", k, err)
		}
		out[name] = v
	}
	return out, nil
}

func convertFlag(t flagType, v any) (any, error) {
	switch t {
	case flagInt:
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return nil, fmt.Errorf("%d must be ≥ 0", x)
			}
			return x, nil
		case float64:
			if x != math.Trunc(x) || x < 0 || x > math.MaxInt32 {
				return nil, fmt.Errorf("%v is not a non-negative integer", x)
			}
			return int64(x), nil
		}
		return nil, fmt.Errorf("%v (%T) is not an integer", v, v)
	case flagFloat:
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("%v is not finite", x)
			}
			return x, nil
		}
		return nil, fmt.Errorf("%v (%T) is not a number", v, v)
	case flagString:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("%v (%T) is not a string", v, v)
	case flagBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("%v (%T) is not a boolean", v, v)
	case flagText:
		switch x := v.(type) {
		case string:
			return x, nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("%v is not finite", x)
			}
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
		return nil, fmt.Errorf("%v (%T) is not a string or number", v, v)
	}
	return nil, fmt.Errorf("unknown flag type")
}

// mergeTrain returns base overridden by over (both normalized).
func mergeTrain(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// trainArgs renders normalized overrides as command-line flags, sorted by name.
func trainArgs(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		var s string
		switch x := m[k].(type) {
		case int64:
			s = strconv.FormatInt(x, 10)
		case float64:
			s = strconv.FormatFloat(x, 'g', -1, 64)
		case string:
			s = x
		case bool: // Go boolean flags take their value in the same argument
			out = append(out, "--"+k+"="+strconv.FormatBool(x))
			continue
		default:
			s = fmt.Sprint(x)
		}
		out = append(out, "--"+k, s)
	}
	return out
}

// ExpandPath expands ${VAR} and ${VAR:-default} (and $VAR) in p.
func ExpandPath(p string) string {
	return os.Expand(p, func(name string) string {
		if i := strings.Index(name, ":-"); i >= 0 {
			if v := os.Getenv(name[:i]); v != "" {
				return v
			}
			return name[i+2:]
		}
		return os.Getenv(name)
	})
}
