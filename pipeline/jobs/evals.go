package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/metrics"

	"gonum.org/v1/gonum/stat"
)

// Metric is one computed number of a unit, with optional JSON detail.
type Metric struct {
	Name   string
	Value  float64 // NaN for detail-only rows
	Detail any     // marshalled to JSON; nil for none
}

// EnergyHistogram is the detail of the energy_hist metric: histograms of the energies of the
// samples and of the data (test split) over the same bins [Lo, Hi), plus the counts outside.
type EnergyHistogram struct {
	Lo           float64 `json:"lo"`
	Hi           float64 `json:"hi"`
	Bins         int     `json:"bins"`
	Samples      []int64 `json:"samples"`
	Data         []int64 `json:"data"`
	SamplesUnder int64   `json:"samples_under"`
	SamplesOver  int64   `json:"samples_over"`
	DataUnder    int64   `json:"data_under"`
	DataOver     int64   `json:"data_over"`
	// SamplesNonFinite counts samples whose energy is NaN or infinite (not in any bin).
	SamplesNonFinite int64 `json:"samples_non_finite"`
}

// DistanceHistograms is the detail of the distance_hist metric: relative-distance histograms
// (REFERENCE §3.2: 100 bins of 0.13 Å over [0, 13) Å, the last bin open) of the samples and
// of the reference.
type DistanceHistograms struct {
	Bins      int     `json:"bins"`
	Max       float64 `json:"max"`
	Samples   []int64 `json:"samples"`
	Reference []int64 `json:"reference"`
	RefName   string  `json:"reference_name"`
}

// Curve is the detail of the curve metric: per-epoch training metrics from metrics.parquet.
type Curve struct {
	Epoch    []int64    `json:"epoch"`
	Step     []int64    `json:"step"`
	TrainNLL []*float64 `json:"train_nll"`
	ValNLL   []*float64 `json:"val_nll"`
	TestNLL  []*float64 `json:"test_nll"`
	WallS    []*float64 `json:"wall_s"`
}

// EnergyMetrics compares the energies of the particle configurations in samplesPath with
// those of the data table dataPath (both particle-configuration tables of system ds).
// Energies are recomputed from the positions under the system's potential.
func EnergyMetrics(ctx context.Context, ds, samplesPath, dataPath string, bins int) ([]Metric, error) {
	sys, err := particles.SystemByName(ds)
	if err != nil {
		return nil, err
	}
	if bins <= 0 {
		bins = 60
	}
	energies := func(path string) ([]float64, error) {
		var out []float64
		err := table.ScanConfigs(path, 0, func(cs []particles.Config) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range cs {
				if cs[i].System != "" && cs[i].System != sys.Name {
					return fmt.Errorf("configuration %d is %s, want %s", cs[i].ID, cs[i].System, sys.Name)
				}
				e, err := sys.Energy(cs[i].Positions)
				if err != nil {
					return fmt.Errorf("configuration %d: %w", cs[i].ID, err)
				}
				out = append(out, e)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("jobs: energies of %s: %w", path, err)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("jobs: %s has no configurations", path)
		}
		return out, nil
	}
	se, err := energies(samplesPath)
	if err != nil {
		return nil, err
	}
	de, err := energies(dataPath)
	if err != nil {
		return nil, err
	}
	sFin, nonFinite := finite(se)
	dFin, _ := finite(de)
	if len(dFin) == 0 {
		return nil, fmt.Errorf("jobs: %s: no finite data energy", dataPath)
	}
	sort.Float64s(dFin)
	sort.Float64s(sFin)
	// Bins cover the central 99% of the data, widened by 10% on each side.
	lo, hi := quantile(dFin, 0.005), quantile(dFin, 0.995)
	if hi <= lo {
		lo, hi = lo-1, hi+1
	}
	pad := 0.1 * (hi - lo)
	lo, hi = lo-pad, hi+pad
	h := EnergyHistogram{Lo: lo, Hi: hi, Bins: bins, Samples: make([]int64, bins), Data: make([]int64, bins),
		SamplesNonFinite: int64(nonFinite)}
	fill := func(xs []float64, counts []int64, under, over *int64) {
		for _, x := range xs {
			switch {
			case x < lo:
				*under++
			case x >= hi:
				*over++
			default:
				b := int((x - lo) / (hi - lo) * float64(bins))
				counts[min(b, bins-1)]++
			}
		}
	}
	fill(sFin, h.Samples, &h.SamplesUnder, &h.SamplesOver)
	fill(dFin, h.Data, &h.DataUnder, &h.DataOver)
	mean, std := meanStd(sFin)
	dMean, dStd := meanStd(dFin)
	return []Metric{
		{Name: "mean_energy", Value: mean},
		{Name: "median_energy", Value: quantile(sFin, 0.5)},
		{Name: "std_energy", Value: std},
		{Name: "frac_finite", Value: float64(len(sFin)) / float64(len(se))},
		{Name: "n_samples", Value: float64(len(se))},
		{Name: "data_mean_energy", Value: dMean},
		{Name: "data_median_energy", Value: quantile(dFin, 0.5)},
		{Name: "data_std_energy", Value: dStd},
		{Name: "energy_hist", Value: math.NaN(), Detail: h},
	}, nil
}

func finite(xs []float64) (out []float64, dropped int) {
	out = make([]float64, 0, len(xs))
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			dropped++
			continue
		}
		out = append(out, x)
	}
	return out, dropped
}

// quantile of sorted xs by linear interpolation (NaN when empty).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// meanStd is the sample mean and standard deviation (n−1; 0 for one value) of xs (NaN for none).
func meanStd(xs []float64) (mean, std float64) {
	switch len(xs) {
	case 0:
		return math.NaN(), math.NaN()
	case 1:
		return xs[0], 0
	}
	return stat.MeanStdDev(xs, nil)
}

// StabilityMetrics computes atom and molecule stability (REFERENCE §3.1) of a molecule table,
// using its first n molecules (all when n ≤ 0).
func StabilityMetrics(ctx context.Context, path string, n int) ([]Metric, error) {
	var s metrics.Stability
	err := scanMolecules(ctx, path, n, 0, func(m *molecule.Molecule) error {
		_, err := s.AddMolecule(m)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: stability of %s: %w", path, err)
	}
	if s.Molecules == 0 {
		return nil, fmt.Errorf("jobs: stability of %s: no molecules", path)
	}
	sum := s.Summary()
	return []Metric{
		{Name: "atom_stable", Value: s.AtomStable()},
		{Name: "mol_stable", Value: s.MolStable()},
		{Name: "n_molecules", Value: float64(s.Molecules)},
		{Name: "stability_detail", Value: math.NaN(), Detail: sum},
	}, nil
}

// JSMetrics computes the JS divergence (and symmetric KL) of the relative-distance histogram
// of the structures with nAtoms atoms in a molecule table or a table of 3-D configurations (QM9
// Positional samples) — its first n such, all when n ≤ 0 — against the reference analyzed_19
// histogram (REFERENCE §3.2).
func JSMetrics(ctx context.Context, path string, n, nAtoms int) ([]Metric, error) {
	if nAtoms <= 0 {
		nAtoms = 19
	}
	h, count, err := metrics.DistanceHistogramOf(ctx, path, nAtoms, n)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if count == 0 {
		return nil, fmt.Errorf("jobs: %s has no molecule with %d atoms", path, nAtoms)
	}
	ref := metrics.Analyzed19Histogram()
	js, err := metrics.JSDivergence(h.Floats(), ref)
	if err != nil {
		return nil, err
	}
	kl, err := metrics.SymmetricKL(h.Floats(), ref)
	if err != nil {
		return nil, err
	}
	refCounts := make([]int64, len(ref))
	for i, v := range metrics.Analyzed19Distances {
		refCounts[i] = v
	}
	return []Metric{
		{Name: "js", Value: js},
		{Name: "sym_kl", Value: kl},
		{Name: "n_molecules", Value: float64(count)},
		{Name: "distance_hist", Value: math.NaN(), Detail: DistanceHistograms{
			Bins: metrics.DistBins, Max: metrics.DistMax, Samples: h.Bins[:], Reference: refCounts,
			RefName: "analyzed_19 (QM9 train, 19 atoms)"}},
	}, nil
}

// scanMolecules calls fn for the first n molecules (all if n ≤ 0) of a molecule table with
// nAtoms atoms (any if 0).
func scanMolecules(ctx context.Context, path string, n, nAtoms int, fn func(m *molecule.Molecule) error) error {
	seen := 0
	errStop := fmt.Errorf("stop")
	err := table.ScanMolecules(path, 0, func(ms []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ms {
			if nAtoms > 0 && ms[i].NAtoms() != nAtoms {
				continue
			}
			if err := fn(&ms[i]); err != nil {
				return err
			}
			seen++
			if n > 0 && seen >= n {
				return errStop
			}
		}
		return nil
	})
	if err == errStop {
		return nil
	}
	return err
}

// detailJSON renders a metric's detail ("" for nil).
func detailJSON(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("jobs: encoding metric detail: %w", err)
	}
	return string(b), nil
}
