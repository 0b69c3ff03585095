package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "etl particles",
		Summary: "import DW4/LJ13 .npy samples (mean removed, energies, train/val/test) into Parquet/Arrow",
		Run:     runETLParticles,
	})
	Register(&Command{
		Name:    "etl mcmc",
		Summary: "generate DW4/LJ13 samples by seeded multi-chain MCMC into a Parquet/Arrow file",
		Run:     runETLMCMC,
	})
}

// runETLParticles implements "enflow etl particles". The split rules (which rows go to
// train, val and test for each input layout, in particular the LJ13 mapping of the DEM
// files) are documented on particles.Import.
func runETLParticles(ctx context.Context, env *Env, args []string) error {
	var (
		system, out, formats string
		data                 []string
		asJSON               bool
	)
	fs := NewFlagSet(env, "etl particles", "--system dw4|lj13 [--data DIR|FILE[,…]] --out DIR [flags]")
	fs.StringVar(&system, "system", "", "particle `system`: dw4 or lj13")
	fs.Var(listFlag{&data}, "data", "input `directories or .npy files`, comma-separated or repeated (default: the shared data folder's dw4/ or lj13/)")
	fs.StringVar(&out, "out", "", "output `directory` for {system}_{train,val,test}.{parquet,arrow}")
	fs.StringVar(&formats, "format", "parquet,arrow", "output `formats`, comma-separated: parquet, arrow")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	sys, err := particles.SystemByName(system)
	if err != nil {
		return fmt.Errorf("%w: --system: %v", ErrUsage, err)
	}
	if !sys.HasPotential() {
		return fmt.Errorf("%w: --system %s: not a particle system with an energy (QM9 Positional comes from `enflow etl qm9 --positional`)", ErrUsage, sys.Name)
	}
	if out == "" {
		return fmt.Errorf("%w: --out is required", ErrUsage)
	}
	exts, err := parseTableFormats(formats)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		def := ""
		if shared.Dir() != "" {
			def = shared.Path("data", sys.Name)
		}
		if def == "" {
			return fmt.Errorf("%w: --data not given and no shared data folder found (set ENFLOW_SHARED)", ErrUsage)
		}
		if _, err := os.Stat(def); err != nil {
			return fmt.Errorf("%w: --data not given and the default %s is missing: %v", ErrUsage, def, err)
		}
		data = []string{def}
	}

	start := time.Now()
	slog.Info("etl particles: importing", "system", sys.Name, "data", data)
	d, err := particles.Import(sys, data)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	var writers []*table.ConfigWriter
	abort := func() {
		for _, w := range writers {
			w.Abort()
		}
	}
	var files []string
	counts := map[string]int{}
	means := map[string]float64{}
	for _, split := range particles.SplitNames {
		cs := d.Split(split)
		counts[split] = len(cs)
		means[split] = particles.MeanEnergy(cs)
		for _, ext := range exts {
			path := filepath.Join(out, fmt.Sprintf("%s_%s.%s", sys.Name, split, ext))
			w, err := table.NewConfigWriter(path)
			if err != nil {
				abort()
				return fmt.Errorf("etl particles: %w", err)
			}
			writers = append(writers, w)
			files = append(files, path)
			for i := range cs {
				if i%4096 == 0 && ctx.Err() != nil {
					abort()
					return ctx.Err()
				}
				if err := w.Write(&cs[i]); err != nil {
					abort()
					return fmt.Errorf("etl particles: %s split row %d (source row %d): %w", split, i, cs[i].ID, err)
				}
			}
		}
	}
	for i, w := range writers {
		if err := w.Commit(); err != nil {
			for _, rest := range writers[i+1:] {
				rest.Abort()
			}
			return fmt.Errorf("etl particles: %w", err)
		}
	}
	return Summary(env, asJSON, map[string]any{
		"system":      sys.Name,
		"layout":      d.Layout,
		"data":        data,
		"sources":     d.Sources,
		"counts":      counts,
		"mean_energy": means,
		"files":       files,
		"elapsed_s":   time.Since(start).Round(time.Millisecond).Seconds(),
	})
}

// runETLMCMC implements "enflow etl mcmc".
func runETLMCMC(ctx context.Context, env *Env, args []string) error {
	var (
		system, out, split, kernel, timeSplit string
		asJSON, noProgress                    bool
	)
	opt := particles.MCMCOptions{}
	fs := NewFlagSet(env, "etl mcmc", "--system dw4|lj13 --n N [--seed S] --out FILE.parquet|FILE.arrow | --time-split 50,10,40 --out DIR [flags]")
	fs.StringVar(&system, "system", "", "particle `system`: dw4 or lj13")
	fs.IntVar(&opt.N, "n", 0, "number of `samples`")
	fs.Uint64Var(&opt.Seed, "seed", 1, "master random `seed` (chain c uses a stream derived from (seed, c))")
	fs.StringVar(&out, "out", "", "output `file` (.parquet or .arrow)")
	fs.StringVar(&split, "split", "mcmc", "value of the split column (may be empty)")
	fs.StringVar(&kernel, "kernel", "", "MCMC `kernel`: "+strings.Join(particles.Kernels, ", ")+" (default hmc)")
	fs.IntVar(&opt.Chains, "chains", 0, "independent `chains`, one goroutine each (default 16)")
	fs.IntVar(&opt.BurnIn, "burn-in", -1, "burn-in `iterations` per chain; the step size adapts only here (default 2000)")
	fs.IntVar(&opt.Thin, "thin", 0, "`iterations` between kept samples (default 10)")
	fs.Float64Var(&opt.Step, "step", 0, "initial step `size` (default per kernel)")
	fs.Float64Var(&opt.TargetAccept, "target-accept", 0, "target acceptance `rate` for burn-in adaptation (default per kernel)")
	fs.IntVar(&opt.LeapfrogSteps, "leapfrog", 0, "HMC leapfrog `steps` per trajectory (default 20 for dw4, 10 for lj13)")
	fs.StringVar(&timeSplit, "time-split", "", "`TRAIN,VAL,TEST` percentages: --out is then a directory that receives {system}_{train,val,test}.parquet, "+
		"cut in time (every chain's first TRAIN % of samples, then the next VAL %, then the rest), as for the generalisation experiment of Köhler et al. (e.g. 50,10,40)")
	fs.BoolVar(&noProgress, "no-progress", false, "no progress bar on stderr")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	sys, err := particles.SystemByName(system)
	if err != nil {
		return fmt.Errorf("%w: --system: %v", ErrUsage, err)
	}
	if !sys.HasPotential() {
		return fmt.Errorf("%w: --system %s: not a particle system with an energy (QM9 Positional comes from `enflow etl qm9 --positional`)", ErrUsage, sys.Name)
	}
	if opt.N <= 0 {
		return fmt.Errorf("%w: --n must be positive", ErrUsage)
	}
	if out == "" {
		return fmt.Errorf("%w: --out is required", ErrUsage)
	}
	var cuts []int // with --time-split: first row index of val and of test
	if timeSplit != "" {
		if cuts, err = parseTimeSplit(timeSplit, opt.N); err != nil {
			return fmt.Errorf("%w: --time-split: %v", ErrUsage, err)
		}
	} else if _, err := table.FormatOf(out); err != nil {
		return fmt.Errorf("%w: --out: %v", ErrUsage, err)
	}
	def := particles.DefaultMCMCOptions(sys)
	opt.System = sys
	opt.Kernel = kernel
	if opt.BurnIn < 0 {
		opt.BurnIn = def.BurnIn
	}
	if opt.LeapfrogSteps == 0 && (kernel == "" || kernel == particles.KernelHMC) {
		opt.LeapfrogSteps = def.LeapfrogSteps
	}

	paths := []string{out}
	names := []string{split}
	if cuts != nil {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("etl mcmc: %w", err)
		}
		names = []string{"train", "val", "test"}
		paths = make([]string, 3)
		for i, n := range names {
			paths[i] = train.SplitPath(out, sys.Name, n)
		}
	}
	writers := make([]*table.ConfigWriter, len(paths))
	for i, p := range paths {
		if writers[i], err = table.NewConfigWriter(p); err != nil {
			return fmt.Errorf("etl mcmc: %w", err)
		}
		defer writers[i].Abort()
	}
	progress, finish := particlesProgress(env.Stderr, opt.N, sys.Name+" mcmc", noProgress)
	opt.Progress = progress
	start := time.Now()
	slog.Info("etl mcmc: sampling", "system", sys.Name, "n", opt.N, "seed", opt.Seed, "out", out, "time_split", timeSplit)
	rows := make([]int, len(paths))
	st, err := particles.Sample(ctx, opt, func(c *particles.Config) error {
		part := 0
		for part < len(cuts) && int(c.ID) >= cuts[part] {
			part++
		}
		c.Split = names[part]
		rows[part]++
		return writers[part].Write(c)
	})
	finish()
	if err != nil {
		return fmt.Errorf("etl mcmc: %w", err)
	}
	for i, w := range writers {
		if err := w.Commit(); err != nil {
			for _, p := range paths[:i] {
				os.Remove(p) // all splits or none
			}
			return fmt.Errorf("etl mcmc: %w", err)
		}
	}
	summaryRows := map[string]int{}
	for i, n := range names {
		summaryRows[n] = rows[i]
	}
	return Summary(env, asJSON, map[string]any{
		"rows":               summaryRows,
		"system":             sys.Name,
		"out":                out,
		"samples":            st.Samples,
		"seed":               opt.Seed,
		"kernel":             st.Kernel,
		"chains":             st.Chains,
		"acceptance":         st.Acceptance,
		"burn_in_acceptance": st.BurnInAcceptance,
		"step_sizes":         st.StepSizes,
		"mean_energy":        st.MeanEnergy,
		"energy_std_err":     st.EnergyStdErr,
		"std_energy":         st.StdEnergy,
		"elapsed_s":          time.Since(start).Round(time.Millisecond).Seconds(),
	})
}

// particlesProgress returns a progress callback and a finisher: a progress bar on a
// terminal, otherwise a line per 10 % (nothing when off).
func particlesProgress(w io.Writer, total int, desc string, off bool) (func(int), func()) {
	if off {
		return nil, func() {}
	}
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		step := max(1, total/10)
		return func(n int) {
			if n%step == 0 || n == total {
				fmt.Fprintf(w, "%s: %d/%d samples\n", desc, n, total)
			}
		}, func() {}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("samples"),
		progressbar.OptionShowIts(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
	)
	return func(n int) { bar.Set(n) }, func() { bar.Finish(); fmt.Fprintln(w) }
}

// parseTimeSplit parses "TRAIN,VAL,TEST" percentages (each > 0, summing to 100) and returns the
// first sample index of the val and of the test part among n samples. Samples are emitted
// round-robin over the chains in time order, so an index cut is a cut in time for every chain.
func parseTimeSplit(s string, n int) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%q: want three percentages TRAIN,VAL,TEST, e.g. 50,10,40", s)
	}
	var p [3]float64
	sum := 0.0
	for i, f := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) || v >= 100 {
			return nil, fmt.Errorf("%q: part %d (%q) is not a percentage in (0, 100)", s, i+1, f)
		}
		p[i] = v
		sum += v
	}
	if math.Abs(sum-100) > 1e-9 {
		return nil, fmt.Errorf("%q: the percentages sum to %g, not 100", s, sum)
	}
	a := int(math.Round(float64(n) * p[0] / 100))
	b := int(math.Round(float64(n) * (p[0] + p[1]) / 100))
	if a < 1 || b-a < 1 || n-b < 1 {
		return nil, fmt.Errorf("%q of --n %d leaves an empty split (train %d, val %d, test %d rows)", s, n, a, b-a, n-b)
	}
	return []int{a, b}, nil
}
