package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/metrics"
)

func init() {
	Register(&Command{
		Name:    "metrics stability",
		Summary: "atom and molecule stability of a molecule table (REFERENCE §3.1)",
		Run:     runMetricsStability,
	})
	Register(&Command{
		Name:    "metrics js",
		Summary: "JS divergence of relative distances against a reference histogram (§3.2)",
		Run:     runMetricsJS,
	})
}

// scanBatch is the number of molecules the metrics commands hold in memory at a time.
const scanBatch = 4096

func runMetricsStability(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "metrics stability", "--in FILE.parquet|.arrow [--json]")
	in := fs.String("in", "", "molecule table (.parquet or .arrow)")
	nAtoms := fs.Int("n-atoms", 0, "only molecules with this many atoms (0 = all)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return fmt.Errorf("%w: --in is required", ErrUsage)
	}
	if *nAtoms < 0 {
		return fmt.Errorf("%w: --n-atoms must be ≥ 0", ErrUsage)
	}
	var s metrics.Stability
	err := table.ScanMolecules(*in, scanBatch, func(ms []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ms {
			if *nAtoms > 0 && ms[i].NAtoms() != *nAtoms {
				continue
			}
			if _, err := s.AddMolecule(&ms[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stability of %s: %w", *in, err)
	}
	if s.Molecules == 0 && s.UncoveredMolecules == 0 {
		return fmt.Errorf("stability of %s: no molecules%s", *in, nAtomsNote(*nAtoms))
	}
	sum := s.Summary()
	if *asJSON {
		return WriteJSON(env.Stdout, struct {
			In     string `json:"in"`
			NAtoms int    `json:"n_atoms_filter,omitempty"`
			metrics.StabilitySummary
		}{*in, *nAtoms, sum})
	}
	w := env.Stdout
	fmt.Fprintf(w, "file:         %s%s\n", *in, nAtomsNote(*nAtoms))
	fmt.Fprintf(w, "molecules:    %d\n", sum.NMolecules)
	fmt.Fprintf(w, "atoms:        %d\n", sum.NAtoms)
	fmt.Fprintf(w, "mol_stable:   %.4f  (%d/%d)\n", sum.MolStable, sum.NStableMolecules, sum.NMolecules)
	fmt.Fprintf(w, "atom_stable:  %.4f  (%d/%d)\n", sum.AtomStable, sum.NStableAtoms, sum.NAtoms)
	if sum.NUncoveredMolecules > 0 {
		syms := make([]string, 0, len(sum.UncoveredElements))
		for sym := range sum.UncoveredElements {
			syms = append(syms, sym)
		}
		sort.Slice(syms, func(i, j int) bool { return molecule.NumberOfSymbol(syms[i]) < molecule.NumberOfSymbol(syms[j]) })
		parts := make([]string, len(syms))
		for i, sym := range syms {
			parts[i] = fmt.Sprintf("%s:%d", sym, sum.UncoveredElements[sym])
		}
		fmt.Fprintf(w, "uncovered:    %d molecules (%d atoms) not judged: %d atoms of elements without valence/bond data (%s)\n",
			sum.NUncoveredMolecules, sum.NExcludedAtoms, sum.UncoveredAtoms, strings.Join(parts, " "))
	}
	fmt.Fprintf(w, "\n%-4s %9s %9s %8s  %s\n", "elem", "atoms", "stable", "frac", "valence (total bond order: atoms)")
	var present []string
	for sym := range sum.Elements {
		present = append(present, sym)
	}
	// Ascending atomic number (for QM9 the one-hot order H, C, N, O, F).
	sort.Slice(present, func(i, j int) bool { return molecule.NumberOfSymbol(present[i]) < molecule.NumberOfSymbol(present[j]) })
	for _, sym := range present {
		e := sum.Elements[sym]
		allowed := metrics.AllowedValences(molecule.NumberOfSymbol(sym))
		orders := make([]int, 0, len(e.Valence))
		for k := range e.Valence {
			orders = append(orders, k)
		}
		sort.Ints(orders)
		parts := make([]string, len(orders))
		for i, k := range orders {
			mark := ""
			if slices.Contains(allowed, k) {
				mark = "*"
			}
			parts[i] = fmt.Sprintf("%d%s:%d", k, mark, e.Valence[k])
		}
		fmt.Fprintf(w, "%-4s %9d %9d %8.4f  %s\n", sym, e.Atoms, e.Stable, e.AtomStable, strings.Join(parts, " "))
	}
	return nil
}

func nAtomsNote(n int) string {
	if n > 0 {
		return fmt.Sprintf(" (only molecules with %d atoms)", n)
	}
	return ""
}

func runMetricsJS(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "metrics js", "--in FILE.parquet|.arrow [--n-atoms 19] [--reference analyzed19|FILE] [--json]")
	in := fs.String("in", "", "molecule table (.parquet or .arrow), e.g. generated samples, or 3-D configurations (enflow sample of a qm9-positional run)")
	nAtoms := fs.Int("n-atoms", 19, "only molecules with this many atoms (0 = all)")
	ref := fs.String("reference", "analyzed19",
		"reference histogram: analyzed19 (en_flows' 19-atom train histogram), a molecule table "+
			"(.parquet/.arrow, same --n-atoms filter), a JSON file (array of 100 counts or "+
			`{"distances": [...]}) or a text file of 100 counts`)
	bins := fs.Bool("bins", false, "also print both histograms")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return fmt.Errorf("%w: --in is required", ErrUsage)
	}
	if *nAtoms < 0 {
		return fmt.Errorf("%w: --n-atoms must be ≥ 0", ErrUsage)
	}
	refBins, err := loadReferenceHistogram(ctx, *ref, *nAtoms)
	if err != nil {
		return err
	}
	h, nMol, err := distanceHistogramOf(ctx, *in, *nAtoms)
	if err != nil {
		return err
	}
	if nMol == 0 {
		return fmt.Errorf("js: %s: no molecules%s", *in, nAtomsNote(*nAtoms))
	}
	js, err := metrics.JSDivergence(h.Floats(), refBins)
	if err != nil {
		return fmt.Errorf("js of %s against %s: %w", *in, *ref, err)
	}
	kl, err := metrics.SymmetricKL(h.Floats(), refBins)
	if err != nil {
		return fmt.Errorf("js of %s against %s: %w", *in, *ref, err)
	}
	var refPairs float64
	for _, v := range refBins {
		refPairs += v
	}
	out := map[string]any{
		"in":              *in,
		"reference":       *ref,
		"n_atoms_filter":  *nAtoms,
		"n_molecules":     nMol,
		"n_pairs":         h.Total(),
		"reference_pairs": countValue(refPairs),
		"js":              js,
		"sym_kl":          kl,
	}
	if *bins {
		out["histogram"] = h.Bins[:]
		out["reference_histogram"] = refBins
		out["bin_width"] = metrics.DistMax / metrics.DistBins
	}
	return Summary(env, *asJSON, out)
}

// countValue prints an integral count as an integer.
func countValue(x float64) any {
	if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
		return int64(x)
	}
	return x
}

// distanceHistogramOf histograms a molecule table or a table of 3-D particle configurations
// (e.g. `enflow sample` output of a QM9 Positional run).
func distanceHistogramOf(ctx context.Context, path string, nAtoms int) (*metrics.DistanceHistogram, int, error) {
	return metrics.DistanceHistogramOf(ctx, path, nAtoms, 0)
}

// loadReferenceHistogram resolves --reference.
func loadReferenceHistogram(ctx context.Context, ref string, nAtoms int) ([]float64, error) {
	if ref == "analyzed19" {
		if nAtoms != 19 {
			return nil, fmt.Errorf("%w: --reference analyzed19 is the histogram of 19-atom molecules; use --n-atoms 19 or another --reference", ErrUsage)
		}
		return metrics.Analyzed19Histogram(), nil
	}
	switch strings.ToLower(filepath.Ext(ref)) {
	case ".parquet", ".pq", ".arrow", ".feather", ".ipc":
		h, n, err := distanceHistogramOf(ctx, ref, nAtoms)
		if err != nil {
			return nil, fmt.Errorf("reference: %w", err)
		}
		if n == 0 {
			return nil, fmt.Errorf("reference %s: no molecules%s", ref, nAtomsNote(nAtoms))
		}
		return h.Floats(), nil
	}
	data, err := os.ReadFile(ref)
	if err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	bins, err := parseHistogram(data)
	if err != nil {
		return nil, fmt.Errorf("reference %s: %w", ref, err)
	}
	if len(bins) != metrics.DistBins {
		return nil, fmt.Errorf("reference %s: %d bins, want %d", ref, len(bins), metrics.DistBins)
	}
	return bins, nil
}

// parseHistogram reads a JSON array of counts, a JSON object with the counts under
// "distances", "histogram" or "bins", or counts separated by whitespace or commas.
func parseHistogram(data []byte) ([]float64, error) {
	trimmed := strings.TrimSpace(string(data))
	switch {
	case strings.HasPrefix(trimmed, "["):
		var v []float64
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("JSON array: %w", err)
		}
		return v, nil
	case strings.HasPrefix(trimmed, "{"):
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("JSON object: %w", err)
		}
		for _, key := range []string{"distances", "histogram", "bins"} {
			if raw, ok := obj[key]; ok {
				var v []float64
				if err := json.Unmarshal(raw, &v); err != nil {
					return nil, fmt.Errorf("JSON key %q: %w", key, err)
				}
				return v, nil
			}
		}
		return nil, errors.New(`JSON object has none of the keys "distances", "histogram", "bins"`)
	}
	fields := strings.FieldsFunc(trimmed, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	v := make([]float64, len(fields))
	for i, f := range fields {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("value %d: %w", i+1, err)
		}
		v[i] = x
	}
	return v, nil
}
