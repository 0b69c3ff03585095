package reports

import "math"

// The paper's numbers (Satorras et al. 2021, E(n) Equivariant Normalizing Flows; REFERENCE §5),
// embedded as data. NaN marks a cell the paper leaves empty.

// ModelInfo names a model kind in the paper's tables.
type ModelInfo struct {
	Kind  string // enflow train --model value
	Name  string // as in the paper
	Color string // plot colour
}

// paperModels are the model kinds of the paper, in Table 1's row order.
var paperModels = []ModelInfo{
	{"gnf", "GNF", "#9467bd"},
	{"gnf-att", "GNF-att", "#8c564b"},
	{"gnf-att-aug", "GNF-att-aug", "#e377c2"},
	{"simple", "Simple dynamics", "#1f77b4"},
	{"kernel", "Kernel dynamics", "#2ca02c"},
	{"enf", "E-NF", "#d62728"},
}

// otherColors colour models that are not in the paper (e.g. the gaussian stand-in).
var otherColors = []string{"#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e", "#393b79", "#637939"}

// Table1Sizes are the training-set sizes of Table 1's columns, per dataset.
var Table1Sizes = map[string][]int64{
	"dw4":  {100, 1000, 10000, 100000},
	"lj13": {10, 100, 1000, 10000},
}

// Table1Datasets is the column order of Table 1.
var Table1Datasets = []string{"dw4", "lj13"}

// Table1 is the paper's test NLL (nats) by model kind, dataset and training-set size.
var Table1 = map[string]map[string][]float64{
	"gnf":         {"dw4": {11.93, 11.31, 10.38, 7.95}, "lj13": {43.56, 42.84, 37.17, 36.49}},
	"gnf-att":     {"dw4": {11.65, 11.13, 9.34, 7.83}, "lj13": {43.32, 36.22, 33.84, 32.65}},
	"gnf-att-aug": {"dw4": {8.81, 8.31, 7.90, 7.61}, "lj13": {41.09, 31.50, 30.74, 30.93}},
	"simple":      {"dw4": {9.58, 9.51, 9.53, 9.47}, "lj13": {33.67, 33.10, 32.79, 32.99}},
	"kernel":      {"dw4": {8.74, 8.67, 8.42, 8.26}, "lj13": {35.03, 31.49, 31.17, 31.25}},
	"enf":         {"dw4": {8.31, 8.15, 7.69, 7.48}, "lj13": {33.12, 30.99, 30.56, 30.41}},
}

// Table2Row is one row of the paper's Table 2 (QM9).
type Table2Row struct {
	Kind       string // model kind, or "data"
	Name       string
	NLL        float64 // −log p(x, h, M), nats
	AtomStable float64 // fraction
	MolStable  float64 // fraction
}

// Table2 is the paper's Table 2.
var Table2 = []Table2Row{
	{"gnf-att", "GNF-attention", -28.2, 0.72, 0.003},
	{"gnf-att-aug", "GNF-attention-augmentation", -29.3, 0.75, 0.005},
	{"enf", "E-NF", -59.7, 0.85, 0.049},
	{"data", "Data", math.NaN(), 0.99, 0.952},
}

// Table3Row is one row of the paper's Table 3 (QM9 Positional).
type Table3Row struct {
	Kind string
	Name string
	NLL  float64
	JS   float64 // JS divergence of relative distances
}

// Table3 is the paper's Table 3.
var Table3 = []Table3Row{
	{"simple", "Simple dynamics", 73.0, 0.086},
	{"kernel", "Kernel dynamics", 38.6, 0.029},
	{"gnf", "GNF", -0.9, 0.011},
	{"gnf-att", "GNF-att", -26.6, 0.007},
	{"gnf-att-aug", "GNF-att-aug", -33.5, 0.006},
	{"enf", "E-NF", -70.2, 0.006},
}

// ReferenceJSData is the JS divergence of the real 19-atom QM9 test molecules against
// analyzed_19 (REFERENCE §3.2), shown next to our "data" row of Table 3.
const ReferenceJSData = 3.6e-5

// datasetNames are display names.
var datasetNames = map[string]string{
	"dw4": "DW4", "lj13": "LJ13", "qm9": "QM9", "qm9-positional": "QM9 Positional", "molecules": "Molecules",
}

func datasetName(ds string) string {
	if n, ok := datasetNames[ds]; ok {
		return n
	}
	return ds
}

// DataNote says what data a dataset's cells were trained and evaluated on, and what has been
// published for those data.
type DataNote struct {
	Data      string // the data our cells used, and how they differ from the paper's
	Published string // published NLLs for those data with their convention, or that there are none
}

// Table1Data are the data notes of Table 1's column groups. The shipped DW4/LJ13 files are
// Klein, Krämer & Noé's (2023) DEM data, not en_flows' files (which are not public in small
// form; REFERENCE §1.5); `./just etl` writes the splits the job specs read from them.
var Table1Data = map[string]DataNote{
	"dw4": {
		Data: "our cells were trained and evaluated on the shipped DEM files of Klein, Krämer & Noé (2023; " +
			"DEM_{train,val,test}_split_DW4.npy, same energy, mean removed): train = the first n_data rows of the " +
			"100,000-row train file, validation and test = rows of the 10,000-row val and test files (the first 1000 " +
			"of each with the specs' eval-n = 1000) — not en_flows' dw4-dataidx.npy, on which the paper measured its numbers.",
		Published: "No published NLL for these DEM files is known to us (the reference notes record none, in either " +
			"convention), so none is shown beside ours.",
	},
	"lj13": {
		Data: "our cells were trained and evaluated on the shipped DEM files of Klein, Krämer & Noé (2023; " +
			"DEM_{val,test}_split_LJ13-1000.npy; the DEM train file is not shipped): test = DEM test rows 0–999, " +
			"validation = DEM test rows 1000–1999, train = DEM val rows in the order of en_flows' idx_LJ13.npy — " +
			"en_flows' formula with the DEM files standing in for its all_data/holdout_data files, on which the paper " +
			"measured its numbers.",
		Published: "No published NLL for these DEM files is known to us (the reference notes record none, in either " +
			"convention), so none is shown beside ours.",
	},
}
