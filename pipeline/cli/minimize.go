package cli

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/minimize"
)

func init() {
	Register(&Command{
		Name:    "minimize",
		Summary: "minimise DW4/LJ13 configurations (L-BFGS), check the Hessian, count metastable states",
		Run:     runMinimize,
	})
}

// minimizeState is one state of the minimize summary.
type minimizeState struct {
	ID            int     `json:"id"`
	Energy        float64 `json:"energy"`
	Count         int     `json:"count"`
	IsMinimum     bool    `json:"is_minimum"`
	MinEigenvalue float64 `json:"min_eigenvalue"`
	// RepresentativeID is the table id of the state's lowest-energy member.
	RepresentativeID int64 `json:"representative_id"`
}

func runMinimize(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "minimize", "--system dw4|lj13 --in samples.parquet --out minima.parquet [--json]")
	system := fs.String("system", "", "particle system of the input: dw4 or lj13 (required)")
	energyName := fs.String("energy", "", "energy to minimise (default: the system's; lj13-twice counts LJ13 pairs twice)")
	in := fs.String("in", "", "particle-configuration table (.parquet or .arrow), e.g. enflow sample output")
	out := fs.String("out", "", "output table of the minimised configurations with a state_id column (.parquet or .arrow)")
	limit := fs.Int("limit", 0, "minimise only the first N rows (0 = all)")
	gradTol := fs.Float64("grad-tol", 1e-8, "gradient-norm tolerance ‖∇u‖₂ of a stationary point")
	maxIter := fs.Int("max-iter", 20000, "maximum L-BFGS iterations per configuration")
	eigTol := fs.Float64("eig-tol", 1e-6, "a stationary point is a minimum when every non-rigid Hessian eigenvalue exceeds this")
	distTol := fs.Float64("dist-tol", 1e-3, "same state: max |Δ| of the sorted pair distances below this")
	energyTol := fs.Float64("energy-tol", 1e-5, "same state: energy difference below this")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case *system == "":
		return fmt.Errorf("%w: --system is required (dw4 or lj13)", ErrUsage)
	case *in == "" || *out == "":
		return fmt.Errorf("%w: --in and --out are required", ErrUsage)
	case *limit < 0:
		return fmt.Errorf("%w: --limit must be ≥ 0", ErrUsage)
	case !(*gradTol > 0) || !(*eigTol > 0) || !(*distTol > 0) || !(*energyTol > 0) || *maxIter <= 0:
		return fmt.Errorf("%w: tolerances and --max-iter must be > 0", ErrUsage)
	}
	if _, err := table.FormatOf(*out); err != nil {
		return fmt.Errorf("%w: --out: %v", ErrUsage, err)
	}
	m, err := minimize.New(*system, *energyName, minimize.Options{GradTol: *gradTol, MaxIter: *maxIter, EigTol: *eigTol})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	recs, _, err := table.ReadConfigRecords(*in)
	if err != nil {
		return err
	}
	for i := range recs {
		if recs[i].System != m.Energy.Data.Name {
			return fmt.Errorf("%s: row %d (id %d): field system: %s, want %s (--system %s)",
				*in, i, recs[i].ID, recs[i].System, m.Energy.Data.Name, *system)
		}
	}
	if *limit > 0 && len(recs) > *limit {
		recs = recs[:*limit]
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s: no configurations", *in)
	}

	start := time.Now()
	results := make([]minimize.Result, len(recs))
	failed := make([]bool, len(recs))
	var nFailed, nConverged, nMinima int
	var iters []int
	lastLog := start
	for i := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := m.Minimize(recs[i].Positions)
		if err != nil {
			// A non-finite start (e.g. coinciding LJ particles) is reported, not fatal.
			failed[i] = true
			nFailed++
			fmt.Fprintf(env.Stderr, "minimize: %s: row %d (id %d): %v\n", *in, i, recs[i].ID, err)
			continue
		}
		results[i] = r
		iters = append(iters, r.Iterations)
		if r.Converged {
			nConverged++
		}
		if r.IsMinimum {
			nMinima++
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(env.Stderr, "minimize: %d/%d configurations (%.1f s)\n", i+1, len(recs), time.Since(start).Seconds())
		}
	}

	// States of the converged stationary points.
	var points []minimize.Point
	var index []int
	for i, r := range results {
		if failed[i] || !r.Converged {
			continue
		}
		points = append(points, minimize.Point{X: r.X, Energy: r.Energy, IsMinimum: r.IsMinimum, MinEigenvalue: firstOr(r.Eigenvalues)})
		index = append(index, i)
	}
	states, assign, err := minimize.Cluster(points, m.Energy.Dim, minimize.ClusterOptions{DistTol: *distTol, EnergyTol: *energyTol})
	if err != nil {
		return err
	}
	stateOf := make([]int64, len(recs))
	for i := range stateOf {
		stateOf[i] = -1
	}
	for k, i := range index {
		stateOf[i] = int64(assign[k])
	}

	w, err := table.NewConfigRecordWriter(*out, table.ConfigColumns{StateID: true})
	if err != nil {
		return err
	}
	defer w.Abort()
	for i := range recs {
		rec := table.ConfigRecord{Config: recs[i].Config, LogQ: math.NaN(), StateID: stateOf[i]}
		if failed[i] {
			rec.Energy = math.NaN()
		} else {
			rec.Positions = results[i].X
			rec.Energy = results[i].Energy
		}
		if err := w.Write(&rec); err != nil {
			return err
		}
	}
	if err := w.Commit(); err != nil {
		return err
	}

	var out2 []minimizeState
	metastable := 0
	for _, s := range states {
		if s.IsMinimum {
			metastable++
		}
		out2 = append(out2, minimizeState{ID: s.ID, Energy: s.Energy, Count: s.Count, IsMinimum: s.IsMinimum,
			MinEigenvalue: s.MinEigenvalue, RepresentativeID: recs[index[s.Representative]].ID})
	}
	medianIter := 0
	if len(iters) > 0 {
		sort.Ints(iters)
		medianIter = iters[len(iters)/2]
	}
	wall := time.Since(start).Seconds()
	if *asJSON {
		return WriteJSON(env.Stdout, struct {
			In              string          `json:"in"`
			Out             string          `json:"out"`
			System          string          `json:"system"`
			Energy          string          `json:"energy"`
			N               int             `json:"n"`
			Converged       int             `json:"converged"`
			Minima          int             `json:"minima"`
			Failed          int             `json:"failed"`
			States          int             `json:"states"`
			Metastable      int             `json:"metastable_states"`
			StateList       []minimizeState `json:"state_list"`
			GradTol         float64         `json:"grad_tol"`
			EigTol          float64         `json:"eig_tol"`
			DistTol         float64         `json:"dist_tol"`
			EnergyTol       float64         `json:"energy_tol"`
			MedianIter      int             `json:"median_iterations"`
			WallSeconds     float64         `json:"wall_s"`
			RigidZeroModes  int             `json:"rigid_zero_modes"`
			InternalDOF     int             `json:"internal_dof"`
			StateIDColumn   string          `json:"state_id_column"`
			NonMinimumNotes string          `json:"note,omitempty"`
		}{*in, *out, m.Energy.Data.Name, m.Energy.Name, len(recs), nConverged, nMinima, nFailed, len(states), metastable, out2,
			m.Opts.GradTol, m.Opts.EigTol, *distTol, *energyTol, medianIter, wall,
			m.Energy.Dim * (m.Energy.Dim + 1) / 2, m.Energy.Particles*m.Energy.Dim - m.Energy.Dim*(m.Energy.Dim+1)/2,
			table.ColStateID, saddleNote(len(states) - metastable)})
	}
	o := env.Stdout
	fmt.Fprintf(o, "file:           %s → %s\n", *in, *out)
	fmt.Fprintf(o, "energy:         %s (%s)\n", m.Energy.Name, m.Energy.Doc)
	fmt.Fprintf(o, "configurations: %d (converged %d, minima %d, failed %d; median %d iterations, %.1f s)\n",
		len(recs), nConverged, nMinima, nFailed, medianIter, wall)
	fmt.Fprintf(o, "states:         %d distinct stationary points, %d metastable (minima)\n", len(states), metastable)
	fmt.Fprintf(o, "\n%5s %16s %8s %8s %12s %10s\n", "state", "energy", "count", "minimum", "λ_min", "rep. id")
	for _, s := range out2 {
		fmt.Fprintf(o, "%5d %16.8f %8d %8v %12.4g %10d\n", s.ID, s.Energy, s.Count, s.IsMinimum, s.MinEigenvalue, s.RepresentativeID)
	}
	return nil
}

func firstOr(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return v[0]
}

func saddleNote(n int) string {
	if n > 0 {
		return fmt.Sprintf("%d state(s) are stationary points with a non-positive Hessian eigenvalue (saddles), not metastable", n)
	}
	return ""
}
