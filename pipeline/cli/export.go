package cli

import (
	"context"
	"fmt"

	"github.com/enflow/enflow/pipeline/export"
)

func init() {
	Register(&Command{
		Name:    "export",
		Summary: "export job results or samples as one Arrow IPC or Parquet file (schemas: pipeline/export)",
		Run:     runExport,
	})
}

func runExport(ctx context.Context, env *Env, args []string) error {
	var (
		results, samples, out string
		dedupe, asJSON        bool
	)
	fs := NewFlagSet(env, "export", "--results DIR|FILE --out FILE.arrow|FILE.parquet  |  --samples STATE_DIR|FILE --out FILE")
	fs.StringVar(&results, "results", "", "job state `directory`, its results/ directory, or a results file")
	fs.StringVar(&samples, "samples", "", "job state `directory` (samples of its finished units) or one sample file")
	fs.StringVar(&out, "out", "", "output `file`: .arrow (Arrow IPC) or .parquet")
	fs.BoolVar(&dedupe, "dedupe", false, "results: keep only the latest row per (unit, metric)")
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
	var (
		st  *export.Stats
		err error
	)
	what := "results"
	if results != "" {
		st, err = export.Results(results, out, export.Options{Dedupe: dedupe})
	} else {
		what = "samples"
		st, err = export.Samples(samples, out)
	}
	if err != nil {
		return err
	}
	return Summary(env, asJSON, map[string]any{
		"what": what, "out": st.Out, "format": st.Format, "rows": st.Rows, "units": st.Units, "files": st.Files,
	})
}
