package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/enflow/enflow/reports"
)

func init() {
	Register(&Command{
		Name:    "report",
		Summary: "HTML (and Markdown) report from job results: the paper's Tables 1–3 next to ours, curves, histograms",
		Run:     runReport,
	})
}

func runReport(ctx context.Context, env *Env, args []string) error {
	var (
		out, md, title string
		results        reportSources
		asJSON         bool
		allUnits       bool
	)
	fs := NewFlagSet(env, "report", "--results DIR|FILE [--results …] --out report.html [--md report.md]")
	fs.Var(&results, "results", "job state `directory`, its results/ directory, or a results file (.parquet/.arrow); repeat or comma-separate to combine (e.g. table1_dw4 and table1_lj13)")
	fs.StringVar(&out, "out", "", "HTML `file` to write")
	fs.StringVar(&md, "md", "", "also write the tables as Markdown to this `file`")
	fs.StringVar(&title, "title", "enflow results", "report `title`")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	fs.BoolVar(&allUnits, "all-units", false, "also show stale units: those no longer in the latest jobs run expansion of their spec (left out by default)")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case len(results) == 0:
		return fmt.Errorf("%w: --results is required", ErrUsage)
	case out == "":
		return fmt.Errorf("%w: --out is required", ErrUsage)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := reports.Generate(results, out, md, reports.Options{Title: title, AllUnits: allUnits})
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(out)
	sum := map[string]any{
		"html": out, "rows": r.Rows, "units": r.Units, "filled_cells": r.FilledCells(), "partial_units": r.PartialUnits,
		"curves": len(r.Curves), "energy_histograms": len(r.Energy), "distance_histograms": len(r.Distances),
		"url": "file://" + abs,
	}
	if md != "" {
		sum["markdown"] = md
	}
	if r.StaleUnits > 0 {
		key := "stale_units_left_out"
		if allUnits {
			key = "stale_units_included"
		}
		sum[key], sum["stale_rows"] = r.StaleUnits, r.StaleRows
	}
	if r.BG != nil {
		sum["boltzmann_generator_rows"] = len(r.BG.Generalisation.Rows)
	}
	return Summary(env, asJSON, sum)
}

// reportSources is a repeatable, comma-separated --results flag.
type reportSources []string

func (r *reportSources) String() string { return strings.Join(*r, ",") }

func (r *reportSources) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*r = append(*r, p)
		}
	}
	return nil
}
