package jobs

// The Boltzmann-generator evaluations: ess (importance weights of flow samples against the
// target exp(−u/T), via enflow metrics ess; also the marginal of particle 1, MarginalFileName)
// and states (minimised samples and their distinct metastable states, via enflow minimize;
// also a few configurations before and after minimisation, ConfigurationsFileName).

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// minimaName is the table of minimised samples a states evaluation writes in its unit directory.
const minimaName = "minima.parquet"

// ESSDetail is the detail of the ess_detail metric: the settings and the raw summary of
// enflow metrics ess.
type ESSDetail struct {
	System         string          `json:"system"`
	Energy         string          `json:"energy"`
	Temperature    float64         `json:"temperature"`
	SignConvention string          `json:"sign_convention"`
	Histogram      json.RawMessage `json:"u_histogram,omitempty"` // lo, hi, mass_samples, mass_reweighted
	// Marginal is the file (relative to the unit directory) with the marginal of particle 1
	// (a MarginalHistograms); "" in results written before it existed.
	Marginal string `json:"marginal,omitempty"`
}

// ess runs enflow metrics ess on samples drawn with --log-weights.
func (x *unitExec) ess(ctx context.Context, samples string) ([]Metric, error) {
	u, e := x.u, x.u.Eval
	args := []string{"metrics", "ess", "--in", samples, "--system", u.Dataset,
		"--temperature", strconv.FormatFloat(e.Temperature, 'g', -1, 64), "--json"}
	if e.Energy != "" {
		args = append(args, "--energy", e.Energy)
	}
	if e.Bins > 0 {
		args = append(args, "--bins", strconv.Itoa(e.Bins))
	}
	out, err := x.callPlain(ctx, args...)
	if err != nil {
		return nil, err
	}
	var res struct {
		N              float64         `json:"n"`
		NInfinite      float64         `json:"n_infinite_u"`
		ESS            *float64        `json:"ess"`
		ESSFraction    *float64        `json:"ess_fraction"`
		MeanU          *float64        `json:"mean_u_samples"`
		MeanUReweight  *float64        `json:"mean_u_reweighted"`
		MeanUStderr    *float64        `json:"mean_u_reweighted_stderr"`
		MaxLogW        *float64        `json:"max_log_w"`
		System         string          `json:"system"`
		Energy         string          `json:"energy"`
		Temperature    float64         `json:"temperature"`
		SignConvention string          `json:"sign_convention"`
		Histogram      json.RawMessage `json:"u_histogram"`
	}
	if err := json.Unmarshal(lastJSONLine(out), &res); err != nil {
		return nil, fmt.Errorf("jobs: enflow metrics ess output is not JSON: %w: %q", err, string(out))
	}
	if res.ESS == nil || res.ESSFraction == nil {
		return nil, fmt.Errorf("jobs: enflow metrics ess output has no ess/ess_fraction: %q", string(out))
	}
	marginal, err := Particle1Marginal(ctx, u.Dataset, samples, u.DataDir, 0, e.Bins)
	if err != nil {
		return nil, err
	}
	if err := writeJSONFile(filepath.Join(x.dir, MarginalFileName), marginal); err != nil {
		return nil, err
	}
	return []Metric{
		{Name: "ess", Value: *res.ESS},
		{Name: "ess_fraction", Value: *res.ESSFraction},
		{Name: "mean_u_samples", Value: val(res.MeanU)},
		{Name: "mean_u_reweighted", Value: val(res.MeanUReweight)},
		{Name: "mean_u_reweighted_stderr", Value: val(res.MeanUStderr)},
		{Name: "max_log_w", Value: val(res.MaxLogW)},
		{Name: "n_samples", Value: res.N},
		{Name: "n_infinite_u", Value: res.NInfinite},
		{Name: "ess_detail", Value: math.NaN(), Detail: ESSDetail{System: res.System, Energy: res.Energy,
			Temperature: res.Temperature, SignConvention: res.SignConvention, Histogram: res.Histogram, Marginal: MarginalFileName}},
	}, nil
}

// State is one distinct stationary point found by a states evaluation.
type State struct {
	ID            int     `json:"id"`
	Energy        float64 `json:"energy"`
	Count         int     `json:"count"`
	IsMinimum     bool    `json:"is_minimum"`
	MinEigenvalue float64 `json:"min_eigenvalue"`
}

// StatesDetail is the detail of the states_detail metric.
type StatesDetail struct {
	System    string  `json:"system"`
	Energy    string  `json:"energy"`
	N         int     `json:"n"`
	Converged int     `json:"converged"`
	Failed    int     `json:"failed"`
	States    []State `json:"states"`
	DistTol   float64 `json:"dist_tol"`
	EnergyTol float64 `json:"energy_tol"`
	Minima    string  `json:"minima"` // the minimised samples, relative to the unit directory
	// Configurations is the file (relative to the unit directory) with a few samples before
	// and after minimisation (a StateConfigurations); "" in results written before it existed.
	Configurations string `json:"configurations,omitempty"`
}

// states minimises the samples with enflow minimize and counts the distinct states.
func (x *unitExec) states(ctx context.Context, samples string) ([]Metric, error) {
	u, e := x.u, x.u.Eval
	minima := filepath.Join(x.dir, minimaName)
	args := []string{"minimize", "--system", u.Dataset, "--in", samples, "--out", minima, "--json"}
	if e.Energy != "" {
		args = append(args, "--energy", e.Energy)
	}
	if u.Samples != "" && e.N > 0 {
		args = append(args, "--limit", strconv.Itoa(e.N))
	}
	out, err := x.callPlain(ctx, args...)
	if err != nil {
		return nil, err
	}
	var res struct {
		System     string  `json:"system"`
		Energy     string  `json:"energy"`
		N          int     `json:"n"`
		Converged  int     `json:"converged"`
		Minima     int     `json:"minima"`
		Failed     int     `json:"failed"`
		States     *int    `json:"states"`
		Metastable *int    `json:"metastable_states"`
		StateList  []State `json:"state_list"`
		DistTol    float64 `json:"dist_tol"`
		EnergyTol  float64 `json:"energy_tol"`
	}
	if err := json.Unmarshal(lastJSONLine(out), &res); err != nil {
		return nil, fmt.Errorf("jobs: enflow minimize output is not JSON: %w: %q", err, string(out))
	}
	if res.States == nil || res.Metastable == nil || res.N == 0 {
		return nil, fmt.Errorf("jobs: enflow minimize output has no states/metastable_states/n: %q", string(out))
	}
	train := ""
	if u.Parent != nil {
		if p := filepath.Join(u.DataDir, u.Dataset+"_train.parquet"); fileExists(p) {
			train = p
		}
	}
	pics, err := PictureConfigurations(ctx, u.Dataset, e.Energy, samples, minima, train, res.StateList, pictured)
	if err != nil {
		return nil, err
	}
	if err := writeJSONFile(filepath.Join(x.dir, ConfigurationsFileName), pics); err != nil {
		return nil, err
	}
	lowest := math.NaN()
	for _, s := range res.StateList {
		if s.IsMinimum && (math.IsNaN(lowest) || s.Energy < lowest) {
			lowest = s.Energy
		}
	}
	return []Metric{
		{Name: "metastable_states", Value: float64(*res.Metastable)},
		{Name: "n_states", Value: float64(*res.States)},
		{Name: "converged", Value: float64(res.Converged)},
		{Name: "converged_fraction", Value: float64(res.Converged) / float64(res.N)},
		{Name: "minima", Value: float64(res.Minima)},
		{Name: "failed", Value: float64(res.Failed)},
		{Name: "n_samples", Value: float64(res.N)},
		{Name: "lowest_minimum_energy", Value: lowest},
		{Name: "states_detail", Value: math.NaN(), Detail: StatesDetail{System: res.System, Energy: res.Energy, N: res.N,
			Converged: res.Converged, Failed: res.Failed, States: res.StateList, DistTol: res.DistTol, EnergyTol: res.EnergyTol,
			Minima: minimaName, Configurations: ConfigurationsFileName}},
	}, nil
}

// fileExists reports whether path is an existing regular file.
func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// val is *p, or NaN for nil (a JSON null).
func val(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}
