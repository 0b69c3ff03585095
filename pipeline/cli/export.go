package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/enflow/enflow/pipeline/export"
	"github.com/enflow/enflow/pipeline/molwrite"
)

func init() {
	Register(&Command{
		Name:    "export",
		Summary: "export job results or samples as Arrow IPC/Parquet, or molecules as XYZ, extxyz or SDF (--format)",
		Run:     runExport,
	})
}

func runExport(ctx context.Context, env *Env, args []string) error {
	var (
		results, samples, out, format string
		dedupe, asJSON, perMolecule   bool
		allUnits                      bool
	)
	fs := NewFlagSet(env, "export", "--results DIR|FILE --out FILE.arrow|FILE.parquet  |  --samples STATE_DIR|FILE --out FILE\n"+
		"       enflow export --samples MOLECULES.parquet|.arrow --format xyz|extxyz|sdf --out FILE|DIR [--per-molecule]\n\n"+
		"With --format (or an --out ending in .xyz, .extxyz or .sdf), --samples is a molecule table\n"+
		"(ETL output such as qm9_test.parquet, or enflow sample output) and its molecules are written\n"+
		"as XYZ, extended XYZ (QM9 properties in the comment line) or SDF V2000 (bonds and orders from\n"+
		"the stability metric's bond tables, M  CHG for N/O cations). Without --format, --results and\n"+
		"--samples export job results or job samples (state directories) to Arrow IPC or Parquet.")
	fs.StringVar(&results, "results", "", "job state `directory`, its results/ directory, or a results file")
	fs.StringVar(&samples, "samples", "", "job state `directory` (samples of its finished units) or one sample file; with --format: a molecule table")
	fs.StringVar(&out, "out", "", "output `file`: .arrow (Arrow IPC) or .parquet; with --format: the file, or the directory with --per-molecule")
	fs.StringVar(&format, "format", "", "molecule export `format`: xyz, extxyz or sdf")
	fs.BoolVar(&perMolecule, "per-molecule", false, "molecule export: one file per molecule (mol_<id>.xyz|.sdf) in the directory --out")
	fs.BoolVar(&dedupe, "dedupe", false, "results: keep only the latest row per (unit, metric)")
	fs.BoolVar(&allUnits, "all-units", false, "results and samples of a state directory: also export stale units, those no longer in the latest jobs run expansion of their spec (left out by default, as in enflow report)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case out == "":
		return fmt.Errorf("%w: --out is required", ErrUsage)
	case (results == "") == (samples == ""):
		return fmt.Errorf("%w: give exactly one of --results and --samples", ErrUsage)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if format == "" && !perMolecule {
		switch strings.ToLower(filepath.Ext(out)) {
		case ".xyz", ".extxyz", ".sdf":
			format = strings.TrimPrefix(strings.ToLower(filepath.Ext(out)), ".")
		}
	}
	if format != "" || perMolecule {
		return runExportMolecules(ctx, env, samples, results, out, format, perMolecule, dedupe, asJSON)
	}
	var (
		st  *export.Stats
		err error
	)
	what := "results"
	if results != "" {
		st, err = export.Results(results, out, export.Options{Dedupe: dedupe, AllUnits: allUnits})
	} else {
		if dedupe {
			return fmt.Errorf("%w: --dedupe applies to --results only", ErrUsage)
		}
		what = "samples"
		st, err = export.Samples(samples, out, export.Options{AllUnits: allUnits})
	}
	if err != nil {
		return err
	}
	sum := map[string]any{
		"what": what, "out": st.Out, "format": st.Format, "rows": st.Rows, "units": st.Units, "files": st.Files,
	}
	if st.StaleUnits > 0 {
		key := "stale_units_left_out"
		if allUnits {
			key = "stale_units_included"
		}
		sum[key], sum["stale_rows"] = st.StaleUnits, st.StaleRows
	}
	return Summary(env, asJSON, sum)
}

// runExportMolecules is `enflow export --samples TABLE --format xyz|extxyz|sdf`.
func runExportMolecules(ctx context.Context, env *Env, in, results, out, format string, perMolecule, dedupe, asJSON bool) error {
	switch {
	case results != "":
		return fmt.Errorf("%w: --format exports a molecule table given by --samples, not --results", ErrUsage)
	case dedupe:
		return fmt.Errorf("%w: --dedupe applies to --results only", ErrUsage)
	case format == "":
		return fmt.Errorf("%w: --per-molecule needs --format xyz|extxyz|sdf", ErrUsage)
	}
	f, err := molwrite.ParseFormat(format)
	if err != nil {
		return fmt.Errorf("%w: --format: %v", ErrUsage, err)
	}
	st, err := molwrite.Export(ctx, in, out, molwrite.Options{Format: f, PerMolecule: perMolecule})
	if err != nil {
		return err
	}
	return Summary(env, asJSON, map[string]any{
		"what": "molecules", "in": in, "out": st.Out, "format": st.Format, "molecules": st.Molecules,
		"atoms": st.Atoms, "files": st.Files, "bonds": st.Bonds, "charged_atoms": st.Charged,
		"per_molecule": perMolecule,
	})
}
