package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/enflow/enflow/reports"
)

func init() {
	Register(&Command{
		Name:    "report molecules",
		Summary: "HTML page of molecule pictures (ball-and-stick grid, unstable atoms marked) with size and atom-type distributions",
		Run:     runReportMolecules,
	})
}

func runReportMolecules(ctx context.Context, env *Env, args []string) error {
	var (
		in, data, out, title string
		maxMols, cols        int
		ids                  []string
		asJSON               bool
	)
	fs := NewFlagSet(env, "report molecules", "--in molecules.parquet [--data data/qm9_test.parquet] [--max 24 | --ids 11,14,115] --out page.html")
	fs.StringVar(&in, "in", "", "molecule table `file` (.parquet/.arrow: enflow sample or enflow etl output) to draw")
	fs.StringVar(&data, "data", "", "optional molecule table `file` whose size and atom-type distributions are shown for comparison")
	fs.IntVar(&maxMols, "max", 24, "draw the first `n` molecules (all molecules enter the stability line and the distributions)")
	fs.Var(listFlag{&ids}, "ids", "draw only the molecules with these `ids` (comma-separated or repeated; in table order, at most --max)")
	fs.IntVar(&cols, "columns", 6, "molecules per grid row")
	fs.StringVar(&out, "out", "", "self-contained HTML `file` to write (inline SVG, no scripts, no network)")
	fs.StringVar(&title, "title", "enflow molecules", "page `title`")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case in == "":
		return fmt.Errorf("%w: --in is required", ErrUsage)
	case out == "":
		return fmt.Errorf("%w: --out is required", ErrUsage)
	case maxMols < 1:
		return fmt.Errorf("%w: --max must be at least 1, got %d", ErrUsage, maxMols)
	case cols < 1:
		return fmt.Errorf("%w: --columns must be at least 1, got %d", ErrUsage, cols)
	}
	var idList []int64
	for _, s := range ids {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: --ids: %q is not an integer id", ErrUsage, s)
		}
		idList = append(idList, id)
	}
	p, err := reports.GenerateMolecules(ctx, in, out, reports.MoleculeOptions{Title: title, Data: data, Max: maxMols, Columns: cols, IDs: idList})
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(out)
	sum := map[string]any{
		"html": out, "url": "file://" + abs, "molecules": p.Molecules, "atoms": p.Atoms, "drawn": p.Shown,
		"stable_molecules": p.StableMolecules, "judged_molecules": p.JudgedMolecules,
		"stable_atoms": p.StableAtoms, "judged_atoms": p.JudgedAtoms,
	}
	if data != "" {
		sum["data_molecules"] = p.DataMolecules
	}
	return Summary(env, asJSON, sum)
}
