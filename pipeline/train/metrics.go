package train

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/table"
)

// File names of the per-epoch metrics in a run directory.
const (
	MetricsCSV     = "metrics.csv"
	MetricsParquet = "metrics.parquet"
	// MetricsSchema is the enflow.schema tag of metrics.parquet.
	MetricsSchema = "train-metrics/v1"
)

// EpochMetrics is one row of metrics.csv / metrics.parquet. NaN (written as an empty CSV field
// and a Parquet null) marks a value not computed at that epoch, e.g. val/test between
// evaluations.
type EpochMetrics struct {
	Epoch       int     // 0-based epoch index
	Step        int64   // global optimizer step at the end of the epoch
	TrainNLL    float64 // mean over the epoch's batches of the batch NLL
	TrainLoss   float64 // mean training loss (NLL + regularisation)
	ValNLL      float64
	TestNLL     float64
	BestValNLL  float64 // best validation NLL so far
	BestTestNLL float64 // test NLL at the best validation epoch so far
	WallS       float64 // wall time of the epoch (training + evaluation), seconds
	NFEForward  int64   // training forward dynamics evaluations in the epoch
	NFEBackward int64   // training backward (adjoint) dynamics evaluations in the epoch
	NFEEval     int64   // evaluation dynamics evaluations in the epoch
	LR          float64 // learning rate at the end of the epoch
	GradNorm    float64 // mean global gradient norm over the epoch's steps
	// JS is the Jensen–Shannon divergence of the relative-distance histogram of samples drawn
	// at this evaluation epoch against the reference (QM9 Positional; NaN otherwise), and
	// BestJS its value at the best validation epoch so far (en_flows main_qm9_pos.py).
	JS, BestJS float64
	// AtomStable and MolStable are the stability of molecules sampled at this evaluation epoch
	// (molecule kinds with Options.Stability; NaN otherwise), BestMolStable the molecule
	// stability at the best validation epoch so far (en_flows main_qm9.py analyze_and_save).
	AtomStable, MolStable, BestMolStable float64
	// TrainKL, TrainKLPrior and TrainEnergy are the epoch means of the energy-based terms of
	// the KL and ML+KL objectives (energy.KLResult: the reverse KL without and with the prior
	// term E[log q_Z(z)], and the mean energy of the flow samples); Lambda is the ML weight
	// of ML+KL at this epoch. NaN for ML training.
	TrainKL, TrainKLPrior, TrainEnergy, Lambda float64
}

var metricsCols = []table.Col{
	{Name: "epoch", Type: table.Int64},
	{Name: "step", Type: table.Int64},
	{Name: "train_nll", Type: table.Float64},
	{Name: "train_loss", Type: table.Float64},
	{Name: "val_nll", Type: table.Float64},
	{Name: "test_nll", Type: table.Float64},
	{Name: "best_val_nll", Type: table.Float64},
	{Name: "best_test_nll", Type: table.Float64},
	{Name: "wall_s", Type: table.Float64},
	{Name: "nfe_forward", Type: table.Int64},
	{Name: "nfe_backward", Type: table.Int64},
	{Name: "nfe_eval", Type: table.Int64},
	{Name: "lr", Type: table.Float64},
	{Name: "grad_norm", Type: table.Float64},
	{Name: "js_div", Type: table.Float64},
	{Name: "best_js_div", Type: table.Float64},
	{Name: "atom_stable", Type: table.Float64},
	{Name: "mol_stable", Type: table.Float64},
	{Name: "best_mol_stable", Type: table.Float64},
	{Name: "train_kl", Type: table.Float64},
	{Name: "train_kl_prior", Type: table.Float64},
	{Name: "train_energy", Type: table.Float64},
	{Name: "lambda", Type: table.Float64},
}

// legacyMetricsCols are the column counts of metrics files written before js_div/best_js_div
// and before the stability columns existed; such files are still read (the missing columns
// are then NaN).
var legacyMetricsCols = []int{14, 16, 19}

// MetricsColumns returns the column names of the metrics files, in order.
func MetricsColumns() []string {
	out := make([]string, len(metricsCols))
	for i, c := range metricsCols {
		out[i] = c.Name
	}
	return out
}

func (m *EpochMetrics) values() []any {
	return []any{int64(m.Epoch), m.Step, m.TrainNLL, m.TrainLoss, m.ValNLL, m.TestNLL, m.BestValNLL, m.BestTestNLL,
		m.WallS, m.NFEForward, m.NFEBackward, m.NFEEval, m.LR, m.GradNorm, m.JS, m.BestJS, m.AtomStable, m.MolStable, m.BestMolStable,
		m.TrainKL, m.TrainKLPrior, m.TrainEnergy, m.Lambda}
}

func (m *EpochMetrics) csvRecord() []string {
	vals := m.values()
	rec := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case int64:
			rec[i] = strconv.FormatInt(x, 10)
		case float64:
			if !math.IsNaN(x) {
				rec[i] = strconv.FormatFloat(x, 'g', -1, 64)
			}
		}
	}
	return rec
}

func parseMetricsRecord(rec []string) (EpochMetrics, error) {
	if len(rec) != len(metricsCols) && !slices.Contains(legacyMetricsCols, len(rec)) {
		return EpochMetrics{}, fmt.Errorf("%d fields, want %d", len(rec), len(metricsCols))
	}
	ints := make([]int64, len(metricsCols))
	floats := make([]float64, len(metricsCols))
	for i := len(rec); i < len(metricsCols); i++ {
		floats[i] = math.NaN()
	}
	for i, s := range rec {
		var err error
		if metricsCols[i].Type == table.Int64 {
			ints[i], err = strconv.ParseInt(s, 10, 64)
		} else if s == "" {
			floats[i] = math.NaN()
		} else {
			floats[i], err = strconv.ParseFloat(s, 64)
		}
		if err != nil {
			return EpochMetrics{}, fmt.Errorf("column %s: %w", metricsCols[i].Name, err)
		}
	}
	return EpochMetrics{
		Epoch: int(ints[0]), Step: ints[1], TrainNLL: floats[2], TrainLoss: floats[3], ValNLL: floats[4],
		TestNLL: floats[5], BestValNLL: floats[6], BestTestNLL: floats[7], WallS: floats[8],
		NFEForward: ints[9], NFEBackward: ints[10], NFEEval: ints[11], LR: floats[12], GradNorm: floats[13],
		JS: floats[14], BestJS: floats[15], AtomStable: floats[16], MolStable: floats[17], BestMolStable: floats[18],
		TrainKL: floats[19], TrainKLPrior: floats[20], TrainEnergy: floats[21], Lambda: floats[22],
	}, nil
}

// ReadMetricsCSV reads dir/metrics.csv (no file: no rows).
func ReadMetricsCSV(dir string) ([]EpochMetrics, error) {
	path := filepath.Join(dir, MetricsCSV)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: reading %s: %w", path, err)
	}
	if (len(header) != len(metricsCols) && !slices.Contains(legacyMetricsCols, len(header))) || header[0] != metricsCols[0].Name {
		return nil, fmt.Errorf("train: %s: unexpected header %v", path, header)
	}
	var rows []EpochMetrics
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("train: reading %s: %w", path, err)
		}
		m, err := parseMetricsRecord(rec)
		if err != nil {
			return nil, fmt.Errorf("train: %s line %d: %w", path, line, err)
		}
		rows = append(rows, m)
	}
}

// writeMetrics rewrites metrics.csv and metrics.parquet from rows, atomically (rows are few:
// one per epoch). Rewriting rather than appending keeps both files consistent with the
// checkpointed state when a run is resumed.
func writeMetrics(dir string, rows []EpochMetrics) error {
	csvPath := filepath.Join(dir, MetricsCSV)
	err := atomicfile.Write(csvPath, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(MetricsColumns()); err != nil {
			return err
		}
		for i := range rows {
			if err := cw.Write(rows[i].csvRecord()); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return fmt.Errorf("train: writing %s: %w", csvPath, err)
	}
	pqPath := filepath.Join(dir, MetricsParquet)
	w, err := table.NewRowWriter(pqPath, metricsCols, map[string]string{"enflow.schema": MetricsSchema})
	if err != nil {
		return fmt.Errorf("train: writing %s: %w", pqPath, err)
	}
	defer w.Abort()
	for i := range rows {
		if err := w.Append(rows[i].values()...); err != nil {
			return fmt.Errorf("train: writing %s: %w", pqPath, err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("train: writing %s: %w", pqPath, err)
	}
	return nil
}
