package cli

import (
	"context"
	"fmt"
	"math"

	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/pipeline/metrics"
)

func init() {
	Register(&Command{
		Name:    "metrics ess",
		Summary: "effective sample size and reweighted energy of flow samples with a log_q column (log w = −u/T − log q)",
		Run:     runMetricsESS,
	})
}

// essHistogram is the energy histogram of the ess summary.
type essHistogram struct {
	Lo         float64   `json:"lo"`
	Hi         float64   `json:"hi"`
	Samples    []float64 `json:"mass_samples"`
	Reweighted []float64 `json:"mass_reweighted"`
}

func runMetricsESS(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "metrics ess", "--in samples.parquet --system dw4|lj13 [--temperature T] [--json]")
	in := fs.String("in", "", "particle-configuration table with a log_q column (flow log density of each row)")
	system := fs.String("system", "", "particle system: dw4 or lj13 (required)")
	energyName := fs.String("energy", "", "target energy (default: the system's; lj13-twice counts LJ13 pairs twice, the density of the shipped LJ13 data)")
	temp := fs.Float64("temperature", 1, "temperature T of the target exp(−u/T)")
	forward := fs.Bool("forward", false, "the rows are target (data) samples, not flow samples: report the forward ESS fraction 1/(E_p[w]·E_p[1/w])")
	bins := fs.Int("bins", 0, "also report energy histograms (samples and reweighted) with this many bins (0 = none)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case *in == "":
		return fmt.Errorf("%w: --in is required", ErrUsage)
	case *system == "":
		return fmt.Errorf("%w: --system is required (dw4 or lj13)", ErrUsage)
	case *bins < 0:
		return fmt.Errorf("%w: --bins must be ≥ 0", ErrUsage)
	}
	sys, err := energy.ForSystem(*system, *energyName)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := energy.CheckTemperature(*temp); err != nil {
		return fmt.Errorf("%w: --temperature: %v", ErrUsage, err)
	}
	recs, cols, err := table.ReadConfigRecords(*in)
	if err != nil {
		return err
	}
	if !cols.LogQ {
		return fmt.Errorf("%s: no %q column: the table must carry the flow log density of every row (optional column of the particle-configuration table, see README)", *in, table.ColLogQ)
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s: no configurations", *in)
	}
	u := make([]float64, len(recs))
	logQ := make([]float64, len(recs))
	var plain float64
	var nFinite, nInf int
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := &recs[i]
		if r.System != sys.Data.Name {
			return fmt.Errorf("%s: row %d (id %d): field system: %s, want %s (--system %s)", *in, i, r.ID, r.System, sys.Data.Name, *system)
		}
		if math.IsNaN(r.LogQ) {
			return fmt.Errorf("%s: row %d (id %d): column %q: null", *in, i, r.ID, table.ColLogQ)
		}
		u[i] = sys.Host.EnergyGrad(r.Positions, sys.Dim, nil)
		logQ[i] = r.LogQ
		if math.IsNaN(u[i]) {
			return fmt.Errorf("%s: row %d (id %d): energy is NaN", *in, i, r.ID)
		}
		if math.IsInf(u[i], 1) {
			nInf++
			continue
		}
		plain += u[i]
		nFinite++
		lo, hi = math.Min(lo, u[i]), math.Max(hi, u[i])
	}
	logw, err := metrics.LogWeights(u, logQ, *temp)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if nFinite > 0 {
		plain /= float64(nFinite)
	}
	res := map[string]any{
		"in":              *in,
		"system":          sys.Data.Name,
		"energy":          sys.Name,
		"temperature":     *temp,
		"n":               len(recs),
		"n_infinite_u":    nInf,
		"sign_convention": "log w = -u(x)/T - log q_X(x)",
		"mean_u_samples":  plain,
	}
	maxW := math.Inf(-1)
	for _, v := range logw {
		maxW = math.Max(maxW, v)
	}
	if *forward {
		frac, err := metrics.ForwardESSFraction(logw)
		if err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		res["mode"] = "forward"
		res["ess_fraction"] = frac
	} else {
		ess, err := metrics.KishESS(logw)
		if err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		mean, se, err := metrics.ReweightedMean(logw, u)
		if err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		res["mode"] = "reverse"
		res["ess"] = ess
		res["ess_fraction"] = ess / float64(len(recs))
		res["mean_u_reweighted"] = mean
		res["mean_u_reweighted_stderr"] = se
	}
	res["max_log_w"] = maxW
	if *bins > 0 && nFinite > 0 {
		if !(hi > lo) {
			hi = lo + 1
		}
		hi = math.Nextafter(hi, math.Inf(1))
		flat := make([]float64, len(logw))
		for i := range flat {
			if math.IsInf(logw[i], -1) {
				flat[i] = math.Inf(-1)
			}
		}
		hs, err := metrics.ReweightedHistogram(flat, u, lo, hi, *bins)
		if err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		hr, err := metrics.ReweightedHistogram(logw, u, lo, hi, *bins)
		if err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		res["u_histogram"] = essHistogram{Lo: lo, Hi: hi, Samples: hs.Mass, Reweighted: hr.Mass}
	}
	if *asJSON {
		return WriteJSON(env.Stdout, res)
	}
	if h, ok := res["u_histogram"].(essHistogram); ok {
		delete(res, "u_histogram")
		if err := Summary(env, false, res); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "\n%12s %12s %12s\n", "u (bin lo)", "samples", "reweighted")
		width := (h.Hi - h.Lo) / float64(len(h.Samples))
		for b := range h.Samples {
			fmt.Fprintf(env.Stdout, "%12.4f %12.6f %12.6f\n", h.Lo+float64(b)*width, h.Samples[b], h.Reweighted[b])
		}
		return nil
	}
	return Summary(env, false, res)
}
