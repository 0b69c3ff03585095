package train

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/enflow/enflow/gomlx_models/optim"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// Run directory layout:
//
//	OUT/model.json              model spec (ModelSpec), enough to rebuild the model
//	OUT/checkpoint-*.{json,bin} GoMLX checkpoints, the last KeepCheckpoints (variables, optimizer
//	                            state, hyperparameters and the driver state "/train/state")
//	OUT/best/                   the checkpoint of the best-validation epoch, plus model.json
//	OUT/metrics.csv, metrics.parquet  per-epoch metrics
//	OUT/result.json             summary of the finished (or interrupted) run
const (
	BestDir        = "best"
	ResultFileName = "result.json"

	stateScope = "/train"
	stateParam = "state"
)

// runState is the driver's position, stored as a JSON string context parameter inside every
// checkpoint, so that a resumed run continues with the same data order and seeds.
type runState struct {
	Seed      uint64  `json:"seed"`       // seed of the training stream
	Epoch     int     `json:"epoch"`      // epoch in progress (or next to run)
	Batch     int     `json:"batch"`      // batches of Epoch already applied
	Step      int64   `json:"step"`       // optimizer steps taken
	RNG       string  `json:"rng"`        // PCG state at the start of Epoch (base64)
	BestEpoch int     `json:"best_epoch"` // -1: no evaluation yet
	BestVal   float64 `json:"best_val"`
	BestTest  float64 `json:"best_test"`
	// BestJS is the sample JS divergence at the best validation epoch (QM9 Positional; nil when
	// not computed).
	BestJS *float64 `json:"best_js,omitempty"`
	// InitVal and InitTest are the evaluation before the first step of an --init-from run.
	// BestMolStable is the sample molecule stability at the best validation epoch.
	BestMolStable *float64 `json:"best_mol_stable,omitempty"`
	InitVal       *float64 `json:"init_val,omitempty"`
	InitTest      *float64 `json:"init_test,omitempty"`

	// Accumulators of the epoch in progress.
	SumNLL      float64 `json:"sum_nll"`
	SumLoss     float64 `json:"sum_loss"`
	SumGradNorm float64 `json:"sum_grad_norm"`
	NFEForward  int64   `json:"nfe_forward"`
	NFEBackward int64   `json:"nfe_backward"`
	EpochWallS  float64 `json:"epoch_wall_s"`
	TotalWallS  float64 `json:"total_wall_s"`
	// Energy-based objectives: the epoch's KL accumulators (NKL steps) and the run's objective,
	// kept so that --resume continues with the same one.
	SumKL      float64        `json:"sum_kl,omitempty"`
	SumKLPrior float64        `json:"sum_kl_prior,omitempty"`
	SumEnergy  float64        `json:"sum_energy,omitempty"`
	NKL        int64          `json:"n_kl,omitempty"`
	Energy     *EnergyOptions `json:"energy,omitempty"`
}

func newRunState(seed uint64) (*runState, error) {
	st := &runState{Seed: seed, BestEpoch: -1}
	if err := st.setRNG(rand.NewPCG(seed, trainStream)); err != nil {
		return nil, err
	}
	return st, nil
}

func (s *runState) setRNG(p *rand.PCG) error {
	b, err := p.MarshalBinary()
	if err != nil {
		return fmt.Errorf("train: saving RNG state: %w", err)
	}
	s.RNG = base64.StdEncoding.EncodeToString(b)
	return nil
}

func (s *runState) rng() (*rand.PCG, error) {
	b, err := base64.StdEncoding.DecodeString(s.RNG)
	if err != nil {
		return nil, fmt.Errorf("train: decoding RNG state: %w", err)
	}
	p := &rand.PCG{}
	if err := p.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("train: decoding RNG state: %w", err)
	}
	return p, nil
}

// store puts the state into the context parameters (saved with the next checkpoint).
func (s *runState) store(ctx *mlctx.Context) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("train: encoding run state: %w", err)
	}
	ctx.InAbsPath(stateScope).SetParam(stateParam, string(b))
	return nil
}

// loadRunState reads the state restored from a checkpoint; found is false for a fresh context.
func loadRunState(ctx *mlctx.Context) (st *runState, found bool, err error) {
	v, ok := ctx.InAbsPath(stateScope).GetParam(stateParam)
	if !ok {
		return nil, false, nil
	}
	str, ok := v.(string)
	if !ok {
		return nil, true, fmt.Errorf("train: run state parameter has type %T", v)
	}
	st = &runState{}
	if err := json.Unmarshal([]byte(str), st); err != nil {
		return nil, true, fmt.Errorf("train: decoding run state: %w", err)
	}
	return st, true, nil
}

// listCheckpoints returns the checkpoint base names in dir (oldest first).
func listCheckpoints(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: listing checkpoints: %w", err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, "checkpoint-") || !strings.HasSuffix(name, checkpoints.JsonNameSuffix) {
			continue
		}
		out = append(out, strings.TrimSuffix(name, checkpoints.JsonNameSuffix))
	}
	sort.Strings(out)
	return out, nil
}

// copyLatestTo makes dst hold exactly the latest checkpoint of src plus src's model.json,
// replacing dst as a whole (build in a temporary sibling, then rename).
func copyLatestTo(src, dst string) error {
	list, err := listCheckpoints(src)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("train: no checkpoint in %s to copy", src)
	}
	base := list[len(list)-1]
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, name := range []string{base + checkpoints.JsonNameSuffix, base + checkpoints.BinDataSuffix, ModelFileName} {
		if err := linkOrCopy(filepath.Join(src, name), filepath.Join(tmp, name)); err != nil {
			return err
		}
	}
	old := dst + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("train: replacing %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Rename(old, dst)
		return fmt.Errorf("train: replacing %s: %w", dst, err)
	}
	_ = os.RemoveAll(old)
	return nil
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("train: copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("train: copying %s: %w", src, err)
	}
	return nil
}

// ResolveCheckpointDir picks the directory to load a model from: dir/best when which is "best"
// (or "" and dir/best has a checkpoint), dir itself for "last" (or when it is already a
// best/ directory).
func ResolveCheckpointDir(dir, which string) (string, error) {
	best := filepath.Join(dir, BestDir)
	switch which {
	case "", "best":
		if l, _ := listCheckpoints(best); len(l) > 0 {
			return best, nil
		}
		if which == "best" {
			if l, _ := listCheckpoints(dir); len(l) > 0 && filepath.Base(filepath.Clean(dir)) == BestDir {
				return dir, nil
			}
			return "", fmt.Errorf("train: no best checkpoint under %s", dir)
		}
	case "last":
	default:
		return "", fmt.Errorf("train: unknown checkpoint selection %q (want best or last)", which)
	}
	if l, err := listCheckpoints(dir); err != nil {
		return "", err
	} else if len(l) == 0 {
		return "", fmt.Errorf("train: no checkpoint in %s", dir)
	}
	return dir, nil
}

// LoadedModel is a model rebuilt from a run directory for evaluation or sampling.
type LoadedModel struct {
	Spec *ModelSpec
	Ctx  *mlctx.Context
	Dir  string // directory the checkpoint was loaded from
}

// LoadCheckpointAs is LoadCheckpoint with the model's dtype replaced by dtype ("" keeps it):
// every float variable is converted (the import stores float64 weights, evaluated in float32
// by default).
func LoadCheckpointAs(dir, which, dtype string) (*LoadedModel, error) {
	lm, err := loadCheckpoint(dir, which, true)
	if err != nil {
		return nil, err
	}
	if dtype != "" {
		lm.Spec.DType = dtype
	}
	dt, err := lm.Spec.GoDType()
	if err != nil {
		return nil, err
	}
	if err := ConvertVariables(lm.Ctx, dt); err != nil {
		return nil, fmt.Errorf("train: %s: %w", lm.Dir, err)
	}
	return lm, nil
}

// ConvertVariables converts every float variable of ctx to dtype.
func ConvertVariables(ctx *mlctx.Context, dtype dtypes.DType) error {
	for v := range ctx.IterVariables() {
		if v.Shape().DType == dtype || !v.Shape().DType.IsFloat() {
			continue
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
		data, err := floatsOf(val)
		if err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
		conv, err := floatTensor(dtype, data, val.Shape().Dimensions...)
		if err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
		if err := v.SetValue(conv); err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
	}
	return nil
}

// LoadCheckpoint reads the spec and the latest checkpoint of dir (see ResolveCheckpointDir) into
// a fresh context (variables are bound when the model is built, in the model's own order, with
// their stored dtype). model.json is looked up in the checkpoint directory, then in its parent.
func LoadCheckpoint(dir, which string) (*LoadedModel, error) {
	return loadCheckpoint(dir, which, false)
}

// loadCheckpoint is LoadCheckpoint; immediate loads every variable at once (for dtype
// conversion and for copying the variables, e.g. --init-from).
func loadCheckpoint(dir, which string, immediate bool) (*LoadedModel, error) {
	ckDir, err := ResolveCheckpointDir(dir, which)
	if err != nil {
		return nil, err
	}
	spec, err := LoadSpec(ckDir)
	if err != nil {
		var err2 error
		if spec, err2 = LoadSpec(filepath.Dir(ckDir)); err2 != nil {
			return nil, err
		}
	}
	ctx := mlctx.New()
	ld := checkpoints.Load(ctx).Dir(ckDir)
	if immediate {
		ld = ld.Immediate()
	}
	if _, err := ld.Done(); err != nil {
		return nil, fmt.Errorf("train: loading checkpoint from %s: %w", ckDir, err)
	}
	if immediate {
		markModelVariables(ctx)
	}
	return &LoadedModel{Spec: spec, Ctx: ctx, Dir: ckDir}, nil
}

// LoadModelSpec reads the model.json of a model directory: dir itself (an import or a best/),
// or the run directory dir (its model.json, else its best/).
func LoadModelSpec(dir string) (*ModelSpec, error) {
	s, err := LoadSpec(dir)
	if err == nil {
		return s, nil
	}
	if s2, err2 := LoadSpec(filepath.Join(dir, BestDir)); err2 == nil {
		return s2, nil
	}
	return nil, err
}

// markModelVariables restores the trainable flags that GoMLX checkpoints do not store: loaded
// at once, every variable comes back trainable, including the optimizer's state (scopes
// optim.DefaultScope and GoMLX's optimizers scope) and the integer counters of the driver.
// Only the model's float parameters stay trainable.
func markModelVariables(ctx *mlctx.Context) {
	state := []string{mlctx.ScopeSeparator + optim.DefaultScope, mlctx.ScopeSeparator + optimizers.Scope}
	for v := range ctx.IterVariables() {
		if !v.Shape().DType.IsFloat() {
			v.Trainable = false
			continue
		}
		for _, sc := range state {
			if v.Scope() == sc || strings.HasPrefix(v.Scope(), sc+mlctx.ScopeSeparator) {
				v.Trainable = false
			}
		}
	}
}
