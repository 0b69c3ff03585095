package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

func init() {
	Register(&Command{
		Name:    "stats",
		Summary: "dataset statistics of a molecule or particle table",
		Run:     runStats,
	})
}

// moleculeStats summarises a molecule table.
type moleculeStats struct {
	Kind       string           `json:"kind"` // "molecules"
	In         string           `json:"in"`
	NMolecules int64            `json:"n_molecules"`
	NAtoms     int64            `json:"n_atoms"`
	MeanAtoms  float64          `json:"mean_atoms"`
	MinAtoms   int              `json:"min_atoms"`
	MaxAtoms   int              `json:"max_atoms"`
	Elements   map[string]int64 `json:"atoms_per_element"`
	NAtomsHist map[int]int64    `json:"n_atoms_histogram"`
	Splits     map[string]int64 `json:"splits"` // "" is reported as "none"
	MinID      int64            `json:"min_id"`
	MaxID      int64            `json:"max_id"`
}

func (s *moleculeStats) add(m *molecule.Molecule) {
	n := m.NAtoms()
	if s.NMolecules == 0 || n < s.MinAtoms {
		s.MinAtoms = n
	}
	if s.NMolecules == 0 || n > s.MaxAtoms {
		s.MaxAtoms = n
	}
	if s.NMolecules == 0 || m.ID < s.MinID {
		s.MinID = m.ID
	}
	if s.NMolecules == 0 || m.ID > s.MaxID {
		s.MaxID = m.ID
	}
	s.NMolecules++
	s.NAtoms += int64(n)
	s.NAtomsHist[n]++
	s.Splits[splitName(m.Split)]++
	for _, z := range m.Z {
		sym := fmt.Sprintf("Z=%d", z)
		if t := molecule.TypeIndex(z); t >= 0 {
			sym = molecule.Symbols[t]
		}
		s.Elements[sym]++
	}
}

func splitName(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// particleStats summarises a particle table.
type particleStats struct {
	Kind     string         `json:"kind"` // "particles"
	In       string         `json:"in"`
	NConfigs int            `json:"n_configs"`
	Systems  map[string]int `json:"systems"`
	Splits   map[string]int `json:"splits"`
	Dims     map[int]int    `json:"coordinates_per_config"`
	Energy   *summaryStats  `json:"energy,omitempty"` // over configurations with a non-NaN energy
}

type summaryStats struct {
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

func describe(xs []float64) *summaryStats {
	if len(xs) == 0 {
		return nil
	}
	s := &summaryStats{Min: math.Inf(1), Max: math.Inf(-1)}
	var sum float64
	for _, x := range xs {
		s.Min = math.Min(s.Min, x)
		s.Max = math.Max(s.Max, x)
		sum += x
	}
	s.Mean = sum / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - s.Mean) * (x - s.Mean)
	}
	s.Std = math.Sqrt(ss / float64(len(xs)))
	return s
}

func particleStatsOf(path string, cs []particles.Config) *particleStats {
	s := &particleStats{Kind: "particles", In: path, NConfigs: len(cs),
		Systems: map[string]int{}, Splits: map[string]int{}, Dims: map[int]int{}}
	energies := make([]float64, 0, len(cs))
	for i := range cs {
		c := &cs[i]
		s.Systems[c.System]++
		s.Splits[splitName(c.Split)]++
		s.Dims[len(c.Positions)]++
		if !math.IsNaN(c.Energy) {
			energies = append(energies, c.Energy)
		}
	}
	s.Energy = describe(energies)
	return s
}

func runStats(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "stats", "--in FILE.parquet|.arrow [--json]")
	in := fs.String("in", "", "molecule or particle table (.parquet or .arrow)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return fmt.Errorf("%w: --in is required", ErrUsage)
	}

	// A molecule table is tried first (streamed); if it is rejected before any batch was
	// read, the file is read as a particle table instead.
	ms := &moleculeStats{Kind: "molecules", In: *in, Elements: map[string]int64{},
		NAtomsHist: map[int]int64{}, Splits: map[string]int64{}}
	batches := 0
	var cbErr error
	molErr := table.ScanMolecules(*in, scanBatch, func(batch []molecule.Molecule) error {
		batches++
		if err := ctx.Err(); err != nil {
			cbErr = err
			return err
		}
		for i := range batch {
			ms.add(&batch[i])
		}
		return nil
	})
	switch {
	case molErr == nil:
		if ms.NMolecules > 0 {
			ms.MeanAtoms = float64(ms.NAtoms) / float64(ms.NMolecules)
		}
		return printMoleculeStats(env, *asJSON, ms)
	case cbErr != nil || batches > 0:
		return fmt.Errorf("stats of %s: %w", *in, molErr)
	}
	cs, partErr := table.ReadConfigs(*in)
	if partErr != nil {
		return fmt.Errorf("stats of %s: neither a molecule table (%v) nor a particle table (%w)",
			*in, molErr, partErr)
	}
	return printParticleStats(env, *asJSON, particleStatsOf(*in, cs))
}

func printMoleculeStats(env *Env, asJSON bool, s *moleculeStats) error {
	if asJSON {
		return WriteJSON(env.Stdout, s)
	}
	w := env.Stdout
	fmt.Fprintf(w, "file:        %s (molecule table)\n", s.In)
	fmt.Fprintf(w, "molecules:   %d\n", s.NMolecules)
	fmt.Fprintf(w, "atoms:       %d (mean %.3f, min %d, max %d per molecule)\n", s.NAtoms, s.MeanAtoms, s.MinAtoms, s.MaxAtoms)
	fmt.Fprintf(w, "ids:         %d … %d\n", s.MinID, s.MaxID)
	fmt.Fprintf(w, "splits:      %s\n", formatCounts(s.Splits))
	els := make([]string, 0, len(s.Elements))
	for _, sym := range molecule.Symbols {
		if c, ok := s.Elements[sym]; ok {
			els = append(els, fmt.Sprintf("%s %d", sym, c))
		}
	}
	for k, c := range s.Elements {
		if molecule.NumberOf(k) == 0 {
			els = append(els, fmt.Sprintf("%s %d", k, c))
		}
	}
	fmt.Fprintf(w, "elements:    %s\n", strings.Join(els, ", "))
	fmt.Fprintf(w, "n_atoms histogram:\n")
	writeIntHistogram(w, s.NAtomsHist)
	return nil
}

func printParticleStats(env *Env, asJSON bool, s *particleStats) error {
	if asJSON {
		return WriteJSON(env.Stdout, s)
	}
	w := env.Stdout
	fmt.Fprintf(w, "file:        %s (particle table)\n", s.In)
	fmt.Fprintf(w, "configs:     %d\n", s.NConfigs)
	fmt.Fprintf(w, "systems:     %s\n", formatCounts(s.Systems))
	fmt.Fprintf(w, "splits:      %s\n", formatCounts(s.Splits))
	dims := make(map[string]int, len(s.Dims))
	for k, v := range s.Dims {
		dims[fmt.Sprint(k)] = v
	}
	fmt.Fprintf(w, "coordinates: %s\n", formatCounts(dims))
	if e := s.Energy; e != nil {
		fmt.Fprintf(w, "energy:      min %.6g, max %.6g, mean %.6g, std %.6g\n", e.Min, e.Max, e.Mean, e.Std)
	}
	return nil
}

func formatCounts[V int | int64](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func writeIntHistogram(w io.Writer, h map[int]int64) {
	keys := make([]int, 0, len(h))
	var maxC int64
	for k, c := range h {
		keys = append(keys, k)
		maxC = max(maxC, c)
	}
	sort.Ints(keys)
	for _, k := range keys {
		bar := 0
		if maxC > 0 {
			bar = int(40 * h[k] / maxC)
		}
		fmt.Fprintf(w, "  %3d %8d %s\n", k, h[k], strings.Repeat("#", bar))
	}
}
