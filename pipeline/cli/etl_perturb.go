package cli

import (
	"context"
	"fmt"
	"math"
	"os"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "etl perturb",
		Summary: "one configuration plus Gaussian noise into {system}_{train,val,test}.parquet (the discovery experiment's training set)",
		Run:     runETLPerturb,
	})
}

// runETLPerturb implements "enflow etl perturb".
func runETLPerturb(ctx context.Context, env *Env, args []string) error {
	var (
		system, in, out string
		id              int64
		sizes           [3]int
		std             float64
		seed            uint64
		asJSON          bool
	)
	fs := NewFlagSet(env, "etl perturb", "--system dw4|lj13 --in configs.parquet [--id K] --std σ --out DIR [flags]")
	fs.StringVar(&system, "system", "", "particle `system`: dw4 or lj13")
	fs.StringVar(&in, "in", "", "particle-configuration `table` holding the configuration to perturb (e.g. enflow minimize output)")
	fs.Int64Var(&id, "id", -1, "`id` of the row to perturb (default: the row with the lowest energy)")
	fs.Float64Var(&std, "std", 0.05, "standard deviation `σ` of the Gaussian noise on every coordinate (mean removed afterwards)")
	fs.IntVar(&sizes[0], "n-train", 1000, "training `rows`")
	fs.IntVar(&sizes[1], "n-val", 200, "validation `rows`")
	fs.IntVar(&sizes[2], "n-test", 200, "test `rows`")
	fs.Uint64Var(&seed, "seed", 1, "random `seed` (split s uses seed+s)")
	fs.StringVar(&out, "out", "", "output `directory` for {system}_{train,val,test}.parquet")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	sys, err := particles.SystemByName(system)
	if err != nil {
		return fmt.Errorf("%w: --system: %v", ErrUsage, err)
	}
	if !sys.HasPotential() {
		return fmt.Errorf("%w: --system %s: not a particle system with an energy", ErrUsage, sys.Name)
	}
	switch {
	case in == "":
		return fmt.Errorf("%w: --in is required", ErrUsage)
	case out == "":
		return fmt.Errorf("%w: --out is required", ErrUsage)
	case !(std >= 0) || math.IsInf(std, 0):
		return fmt.Errorf("%w: --std must be finite and ≥ 0, got %v", ErrUsage, std)
	case sizes[0] <= 0 || sizes[1] <= 0 || sizes[2] <= 0:
		return fmt.Errorf("%w: --n-train, --n-val and --n-test must be positive", ErrUsage)
	}
	cs, err := table.ReadConfigs(in)
	if err != nil {
		return fmt.Errorf("etl perturb: %w", err)
	}
	pick := -1
	for i, c := range cs {
		if c.System != sys.Name {
			return fmt.Errorf("%s: row %d (id %d): field system: %s, want %s (--system %s)", in, i, c.ID, c.System, sys.Name, system)
		}
		switch {
		case id >= 0 && c.ID == id:
			pick = i
		case id < 0 && !math.IsNaN(c.Energy) && (pick < 0 || c.Energy < cs[pick].Energy):
			pick = i
		}
	}
	if pick < 0 {
		if id >= 0 {
			return fmt.Errorf("%s: no row with id %d", in, id)
		}
		return fmt.Errorf("%s: no row with a finite energy", in)
	}
	center := cs[pick]
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("etl perturb: %w", err)
	}
	names := []string{"train", "val", "test"}
	var written []string
	offset := int64(0)
	for s, name := range names {
		part, err := particles.Perturb(sys, center.Positions, particles.PerturbOptions{N: sizes[s], Std: std, Seed: seed + uint64(s)})
		if err != nil {
			return fmt.Errorf("etl perturb: %s: %w", in, err)
		}
		path := train.SplitPath(out, sys.Name, name)
		if err := writeSplit(path, name, offset, part); err != nil {
			for _, p := range written {
				os.Remove(p) // all splits or none
			}
			return fmt.Errorf("etl perturb: %w", err)
		}
		written = append(written, path)
		offset += int64(sizes[s])
	}
	return Summary(env, asJSON, map[string]any{
		"system":        sys.Name,
		"in":            in,
		"center_id":     center.ID,
		"center_energy": center.Energy,
		"std":           std,
		"seed":          seed,
		"out":           out,
		"rows":          map[string]int{"train": sizes[0], "val": sizes[1], "test": sizes[2]},
	})
}

// writeSplit writes one split's configurations atomically, labelled with the split and with
// IDs shifted by offset (unique across the three files).
func writeSplit(path, split string, offset int64, cs []particles.Config) error {
	w, err := table.NewConfigWriter(path)
	if err != nil {
		return err
	}
	defer w.Abort()
	for i := range cs {
		cs[i].Split, cs[i].ID = split, cs[i].ID+offset
		if err := w.Write(&cs[i]); err != nil {
			return err
		}
	}
	return w.Commit()
}
