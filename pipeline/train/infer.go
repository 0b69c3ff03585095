package train

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// RunInfoFileName holds what a run was trained on (RunInfo), written by `enflow train`.
const RunInfoFileName = "run.json"

// RunInfo records the data and schedule of a run, so that `enflow eval` can find the splits.
type RunInfo struct {
	Dataset   string   `json:"dataset"`
	DataDir   string   `json:"data_dir"` // absolute
	NData     int      `json:"n_data"`
	Schedule  Schedule `json:"schedule"`
	LR        float64  `json:"lr"`
	Seed      uint64   `json:"seed"`
	ValTrace  string   `json:"val_trace"`
	TestTrace string   `json:"test_trace"`
	// Settings restored by --resume (absent in run.json files written before they existed).
	WD            *float64 `json:"wd,omitempty"`
	EvalBatch     int      `json:"eval_batch,omitempty"`
	EvalN         int      `json:"eval_n,omitempty"`
	MaxStepsEpoch int      `json:"max_steps_per_epoch,omitempty"`
	Keep          int      `json:"keep,omitempty"`
	// QM9 Positional settings: adaptive gradient clipping and the JS samples per evaluation.
	ClipAdaptive  bool    `json:"clip_adaptive,omitempty"`
	ClipQueueInit float64 `json:"clip_queue_init,omitempty"`
	JSSamples     int     `json:"js_samples,omitempty"`
	// Molecule runs: the model directory the run was initialised from (fine-tuning) and the
	// molecules sampled for the stability metric at each evaluation.
	InitFrom         string `json:"init_from,omitempty"`
	StabilitySamples int    `json:"stability_samples,omitempty"`
	// Energy is the Boltzmann-generator objective of the run when it is not ML (also kept in
	// the checkpoints, which --resume restores).
	Energy *EnergyOptions `json:"energy,omitempty"`
	// Engine is the GoMLX backend the run started on (backend.Name).
	Engine string `json:"engine,omitempty"`
}

// SaveRunInfo writes dir/run.json atomically.
func SaveRunInfo(dir string, info *RunInfo) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("train: encoding run info: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, RunInfoFileName), func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
}

// LoadRunInfo reads dir/run.json, or dir/../run.json when dir is a best/ directory.
func LoadRunInfo(dir string) (*RunInfo, error) {
	var firstErr error
	for _, d := range []string{dir, filepath.Dir(filepath.Clean(dir))} {
		data, err := os.ReadFile(filepath.Join(d, RunInfoFileName))
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		info := &RunInfo{}
		if err := json.Unmarshal(data, info); err != nil {
			return nil, fmt.Errorf("train: decoding %s: %w", filepath.Join(d, RunInfoFileName), err)
		}
		return info, nil
	}
	return nil, fmt.Errorf("train: run info: %w", firstErr)
}

// CNFOverrides replace the saved CNF settings for evaluation or sampling (zero values keep
// the saved setting).
type CNFOverrides struct {
	Solver     string
	RTol, ATol float64
	Steps      int
	Trace      string
}

func (c CNFOverrides) apply(s *CNFSpec) {
	if c.Solver != "" {
		s.Solver = c.Solver
	}
	if c.RTol > 0 {
		s.RTol = c.RTol
	}
	if c.ATol > 0 {
		s.ATol = c.ATol
	}
	if c.Steps > 0 {
		s.Steps = c.Steps
	}
	if c.Trace != "" {
		s.Trace = c.Trace
	}
}

// EvalOptions configures EvaluateRun.
type EvalOptions struct {
	Backend  backends.Backend
	Dir      string // run directory (or its best/ subdirectory)
	Which    string // "best" (default when present) or "last"
	Split    string // "test", "val" or "train" (the run's first n_data rows)
	DataDir  string // "" = the run's data directory (run.json)
	Override CNFOverrides
	Batch    int    // default 100
	Seed     uint64 // seed of the Hutchinson noise
	Limit    int    // > 0 evaluates only the first Limit rows of the split (quick checks)

	// Molecule kinds (qm9):
	Data          string  // a molecule table (.parquet/.arrow) or Cormorant .npz to evaluate instead of a split
	IDs           []int64 // only these molecule ids (all must be found)
	Deterministic bool    // dequantizer noise ε = 0 (u = mu), for regression checks
	PerMolecule   string  // write the per-molecule terms of the bound to this CSV file
	Order         string  // "size" (default: one size per batch, no padding) or "data" (file order, padded)
	DType         string  // "" (the model's), "float32" or "float64"
	// Progress, if not nil, receives one line per evaluated batch.
	Progress io.Writer
}

// EvalReport is the outcome of EvaluateRun.
type EvalReport struct {
	EvalResult
	Split string
	Dir   string // checkpoint directory used
	Spec  ModelSpec
	// Molecule kinds: the data evaluated and the mean per molecule of each term of the bound
	// (log_pz, delta_logp, actnorm_logdet, log_q, log_pn).
	Data  string
	Means map[string]float64
}

// EvaluateRun rebuilds a model from a run directory and computes the NLL of a split.
func EvaluateRun(ctx context.Context, o EvalOptions) (*EvalReport, error) {
	if o.Batch <= 0 {
		o.Batch = 100
	}
	lm, err := loadForInference(o.Dir, o.Which, o.DType)
	if err != nil {
		return nil, err
	}
	spec := *lm.Spec
	o.Override.apply(&spec.CNF)
	if spec.Kind == QM9Kind {
		return evaluateMolecules(ctx, o, lm, spec)
	}
	sys, err := particles.SystemByName(spec.System)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	dtype, err := spec.GoDType()
	if err != nil {
		return nil, err
	}
	info, infoErr := LoadRunInfo(o.Dir)
	dataDir := o.DataDir
	if dataDir == "" {
		if infoErr != nil {
			return nil, fmt.Errorf("train: no --data given and %w", infoErr)
		}
		dataDir = info.DataDir
	}
	var ds *ParticleDataset
	switch o.Split {
	case "test", "val":
		ds, err = LoadParticleSplit(dataDir, sys, o.Split, dtype)
	case "train":
		ds, err = LoadParticleSplit(dataDir, sys, "train", dtype)
		if err == nil && info != nil && info.NData > 0 && info.NData <= ds.Len() {
			ds, err = ds.Head(info.NData)
		}
	default:
		err = fmt.Errorf("train: unknown split %q (want test, val or train)", o.Split)
	}
	if err != nil {
		return nil, err
	}
	if o.Limit > 0 && o.Limit < ds.Len() {
		if ds, err = ds.Head(o.Limit); err != nil {
			return nil, err
		}
	}
	m, err := BuildModel(o.Backend, lm.Ctx, &spec)
	if err != nil {
		return nil, err
	}
	res, err := Evaluate(ctx, m, ds, o.Batch, o.Seed)
	if err != nil {
		return nil, err
	}
	return &EvalReport{EvalResult: res, Split: o.Split, Dir: lm.Dir, Spec: spec}, nil
}

// SampleOptions configures SampleRun.
type SampleOptions struct {
	Backend  backends.Backend
	Dir      string // run directory (or its best/ subdirectory)
	Which    string // "best" (default when present) or "last"
	N        int    // number of samples
	Seed     uint64
	Batch    int    // samples per model call (default 100)
	Out      string // output table (.parquet or .arrow): particle configurations, or molecules for molecule kinds
	Override CNFOverrides
	// LogWeights also writes log_q, the flow's log density of every sample (particle kinds
	// that implement DensitySampler), for importance weights log w = −u/T − log q. A CNF with
	// a Hutchinson trace then uses the exact trace (unless Override.Trace says otherwise), so
	// log q is not a stochastic estimate.
	LogWeights bool

	// Molecule kinds (qm9):
	Buckets int    // merge sizes into at most Buckets padded ranges (qm9.SampleOptions.Buckets)
	Workers int    // concurrent CNF solves (qm9.SampleOptions.Workers; 0 = its default)
	DType   string // "" (the model's), "float32" or "float64"
	// Progress, if not nil, receives one line per solved batch.
	Progress io.Writer
}

// SampleReport is the outcome of SampleRun.
type SampleReport struct {
	N          int
	Dir        string
	Out        string
	Spec       ModelSpec
	MeanEnergy float64 // NaN if the system has no energy
	NFE        int
	Wall       time.Duration

	// Molecule kinds: molecules whose solve failed, the fraction of atoms whose decoded charge
	// equals the atomic number of their type, atom and molecule stability of the samples
	// (bond tables of pipeline/metrics), and the number of ODE solves.
	Molecules *MoleculeSampleStats
}

// MoleculeSampleStats summarises sampled molecules.
type MoleculeSampleStats struct {
	Failed            int     `json:"failed"`
	ChargeConsistency float64 `json:"charge_consistency"`
	AtomStable        float64 `json:"atom_stable"`
	MolStable         float64 `json:"mol_stable"`
	Solves            int     `json:"solves"`
}

// SampleRun draws samples from a trained model and writes them as particle configurations
// (id = sample index, split "sample", energy under the system's potential).
func SampleRun(ctx context.Context, o SampleOptions) (*SampleReport, error) {
	start := time.Now()
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.N <= 0 {
		return nil, fmt.Errorf("train: number of samples %d must be positive", o.N)
	}
	if o.Out == "" {
		return nil, fmt.Errorf("train: no output file")
	}
	lm, err := loadForInference(o.Dir, o.Which, o.DType)
	if err != nil {
		return nil, err
	}
	spec := *lm.Spec
	o.Override.apply(&spec.CNF)
	if spec.Kind == QM9Kind {
		if o.LogWeights {
			return nil, fmt.Errorf("train: --log-weights is for particle models (dw4, lj13), not %s", spec.Kind)
		}
		return sampleMolecules(ctx, o, lm, spec, start)
	}
	if o.LogWeights && o.Override.Trace == "" && spec.CNF.Trace == cnf.TraceHutchinson {
		spec.CNF.Trace = cnf.TraceExact
	}
	sys, err := particles.SystemByName(spec.System)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	dtype, err := spec.GoDType()
	if err != nil {
		return nil, err
	}
	m, err := BuildModel(o.Backend, lm.Ctx, &spec)
	if err != nil {
		return nil, err
	}
	ps, ok := m.(ParticleSampler)
	if !ok {
		return nil, fmt.Errorf("train: the %s model does not sample particle configurations", spec.Kind)
	}
	var ds DensitySampler
	if o.LogWeights {
		if ds, ok = m.(DensitySampler); !ok {
			return nil, fmt.Errorf("train: the %s model does not give the density of its samples (--log-weights)", spec.Kind)
		}
	}
	w, err := table.NewConfigRecordWriter(o.Out, table.ConfigColumns{LogQ: o.LogWeights})
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer w.Abort()
	rng := rand.New(rand.NewPCG(o.Seed, 0x73616d706c65)) // "sample"
	rep := &SampleReport{Dir: lm.Dir, Out: o.Out, Spec: spec}
	sumE, nE := 0.0, 0
	for done := 0; done < o.N; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bs := min(o.Batch, o.N-done)
		ones := make([]float64, bs*sys.Particles)
		for i := range ones {
			ones[i] = 1
		}
		mask, err := floatTensor(dtype, ones, bs, sys.Particles)
		if err != nil {
			return nil, err
		}
		var xT *tensors.Tensor
		var logq []float64
		var st Stats
		if ds != nil {
			xT, logq, st, err = ds.SampleWithLogDensity(bs, sys.Particles, sys.Dim, rng.Uint64())
		} else {
			xT, st, err = ps.Sample(bs, sys.Particles, sys.Dim, mask, rng.Uint64())
		}
		finalize(mask)
		if err != nil {
			return nil, fmt.Errorf("train: sampling configurations %d–%d of %d (seeded batch %d): %w", done, done+bs-1, o.N, done/o.Batch, err)
		}
		x, err := floatsOf(xT)
		finalize(xT)
		if err != nil {
			return nil, err
		}
		f := sys.Flat()
		if len(x) != bs*f {
			return nil, fmt.Errorf("train: model returned %d values for %d samples of %d", len(x), bs, f)
		}
		for i := range bs {
			r := table.ConfigRecord{Config: particles.Config{ID: int64(done + i), Split: "sample", System: sys.Name,
				Positions: x[i*f : (i+1)*f], Energy: math.NaN()}, LogQ: math.NaN(), StateID: -1}
			if logq != nil {
				r.LogQ = logq[i]
			}
			c := &r.Config
			if e, err := sys.Energy(c.Positions); err == nil {
				c.Energy = e
				if !math.IsNaN(e) && !math.IsInf(e, 0) {
					sumE += e
					nE++
				}
			}
			if err := w.Write(&r); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
		}
		rep.NFE += st.NFEForward + st.NFEBackward
		done += bs
	}
	if err := w.Commit(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	rep.N = o.N
	rep.MeanEnergy = math.NaN()
	if nE > 0 {
		rep.MeanEnergy = sumE / float64(nE)
	}
	rep.Wall = time.Since(start)
	return rep, nil
}

// loadForInference loads a model for eval or sample: molecule kinds (whose imported weights are
// stored in float64) and explicit dtype changes load every variable at once and convert it;
// other kinds bind their variables lazily, as stored.
func loadForInference(dir, which, dtype string) (*LoadedModel, error) {
	ckDir, err := ResolveCheckpointDir(dir, which)
	if err != nil {
		return nil, err
	}
	spec, err := LoadModelSpec(ckDir)
	if err != nil {
		if spec, err = LoadSpec(filepath.Dir(ckDir)); err != nil {
			return nil, err
		}
	}
	if dtype == "" && spec.Kind != QM9Kind {
		return LoadCheckpoint(dir, which)
	}
	return LoadCheckpointAs(dir, which, dtype)
}
