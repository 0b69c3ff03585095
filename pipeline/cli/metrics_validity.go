package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/molwrite"
	"github.com/enflow/enflow/scripts/rdkit"
)

func init() {
	Register(&Command{
		Name:    "metrics validity",
		Summary: "validity, uniqueness (and novelty) as EDM computes them; needs RDKit (./just setup-py)",
		Run:     runMetricsValidity,
	})
}

// venvPython is the interpreter of the test venv, relative to the repository root.
var venvPython = filepath.Join(".tools", "venv", "bin", "python")

// findVenvPython returns the venv interpreter: $ENFLOW_PYTHON, else .tools/venv/bin/python
// in the working directory or one of its parents, else beside the executable (bin/enflow →
// ../.tools). It returns the places it looked when none exists.
func findVenvPython() (string, []string) {
	if p := os.Getenv("ENFLOW_PYTHON"); p != "" {
		return p, nil
	}
	var looked []string
	try := func(dir string) string {
		for d := dir; ; d = filepath.Dir(d) {
			p := filepath.Join(d, venvPython)
			looked = append(looked, p)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
			if filepath.Dir(d) == d {
				return ""
			}
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if p := try(wd); p != "" {
			return p, nil
		}
	}
	if exe, err := os.Executable(); err == nil {
		if p := try(filepath.Dir(exe)); p != "" {
			return p, nil
		}
	}
	return "", looked
}

// validityRecord is one line of the validity script's input.
type validityRecord struct {
	Set     string    `json:"set"`
	ID      int64     `json:"id"`
	Symbols []string  `json:"symbols"`
	Bonds   [][3]int  `json:"bonds"`
	Pos     []float64 `json:"pos"` // flattened x0 y0 z0 x1 … (Å); informational
}

// ValidityResult is what the validity script reports.
type ValidityResult struct {
	RDKitVersion string   `json:"rdkit_version"`
	NMolecules   int      `json:"n_molecules"`
	NValid       int      `json:"n_valid"`
	Validity     float64  `json:"validity"`
	NUnique      int      `json:"n_unique"`
	Uniqueness   float64  `json:"uniqueness"`
	NTrain       int      `json:"n_train,omitempty"`
	NTrainSMILES int      `json:"n_train_smiles,omitempty"`
	NNovel       *int     `json:"n_novel,omitempty"`
	Novelty      *float64 `json:"novelty,omitempty"`
	InvalidIDs   []int64  `json:"invalid_ids"`
	Molecules    []struct {
		ID     int64   `json:"id"`
		SMILES *string `json:"smiles"`
	} `json:"molecules,omitempty"`
}

// errNoRDKit is returned when the venv or RDKit is missing.
var errNoRDKit = errors.New("this metric needs RDKit in the Python venv .tools/venv: run ./just setup-py (or set ENFLOW_PYTHON / --python)")

// writeValidityInput streams the molecules of path to w as validity records of set kind.
func writeValidityInput(ctx context.Context, w io.Writer, path, kind string) (int, error) {
	enc := json.NewEncoder(w)
	n, row := 0, 0
	err := table.ScanMolecules(path, scanBatch, func(ms []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ms {
			m := &ms[i]
			rec := validityRecord{Set: kind, ID: m.ID, Symbols: make([]string, len(m.Z)), Bonds: [][3]int{}}
			for k, z := range m.Z {
				s, err := molwrite.Symbol(z)
				if err != nil {
					return fmt.Errorf("row %d (id %d): atom %d: field z: %w", row, m.ID, k, err)
				}
				rec.Symbols[k] = s
			}
			bonds, err := molwrite.Bonds(m)
			if err != nil {
				return fmt.Errorf("row %d: %w", row, err)
			}
			for _, b := range bonds {
				rec.Bonds = append(rec.Bonds, [3]int{b.I, b.J, b.Order})
			}
			rec.Pos = make([]float64, 0, 3*len(m.Positions))
			for _, p := range m.Positions {
				rec.Pos = append(rec.Pos, p[0], p[1], p[2])
			}
			if err := enc.Encode(&rec); err != nil {
				return err
			}
			n++
			row++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// RunValidity computes validity, uniqueness and (with train != "") novelty of the molecule
// table in with the validity script run by python.
func RunValidity(ctx context.Context, python, in, train string, perMolecule bool, stderr io.Writer) (*ValidityResult, error) {
	if _, err := os.Stat(python); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoRDKit, err)
	}
	args := []string{"-c", rdkit.ValidityScript}
	if perMolecule {
		args = append(args, "--smiles")
	}
	cmd := exec.CommandContext(ctx, python, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var stdout, errBuf bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&errBuf, stderr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s: %v", errNoRDKit, python, err)
	}
	bw := bufio.NewWriterSize(stdin, 1<<16)
	nGen, werr := writeValidityInput(ctx, bw, in, "gen")
	if werr == nil && train != "" {
		_, werr = writeValidityInput(ctx, bw, train, "train")
	}
	if werr == nil {
		werr = bw.Flush()
	}
	stdin.Close()
	runErr := cmd.Wait()
	if runErr != nil {
		var ee *exec.ExitError
		if errors.As(runErr, &ee) && ee.ExitCode() == 3 {
			return nil, fmt.Errorf("%w (%s cannot import rdkit)", errNoRDKit, python)
		}
		return nil, fmt.Errorf("validity script (%s): %v: %s", python, runErr, strings.TrimSpace(errBuf.String()))
	}
	if werr != nil {
		return nil, werr
	}
	if nGen == 0 {
		return nil, fmt.Errorf("%s: no molecules", in)
	}
	var res ValidityResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("validity script output: %w", err)
	}
	if res.NMolecules != nGen {
		return nil, fmt.Errorf("validity script saw %d molecules, %d were sent", res.NMolecules, nGen)
	}
	return &res, nil
}

func runMetricsValidity(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "metrics validity", "--in FILE.parquet|.arrow [--train FILE] [--json]\n\n"+
		"Validity, uniqueness and novelty as EDM (Hoogeboom et al. 2022) computes them. This one\n"+
		"metric NEEDS RDKit: it runs scripts/rdkit/validity.py with the Python of .tools/venv\n"+
		"(install it with ./just setup-py). Bonds and orders come from the stability bond tables;\n"+
		"a molecule is valid when RDKit sanitizes it, its SMILES is that of its largest fragment;\n"+
		"uniqueness = distinct SMILES / valid; novelty (--train) = distinct SMILES not in the\n"+
		"training table / distinct SMILES.")
	in := fs.String("in", "", "molecule table (.parquet or .arrow): samples or data")
	train := fs.String("train", "", "training molecule table for novelty (optional)")
	python := fs.String("python", "", "Python interpreter with RDKit (default: $ENFLOW_PYTHON, else .tools/venv/bin/python of this checkout)")
	smiles := fs.Bool("smiles", false, "also report each molecule's SMILES (null if invalid)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return fmt.Errorf("%w: --in is required", ErrUsage)
	}
	py := *python
	if py == "" {
		var looked []string
		py, looked = findVenvPython()
		if py == "" {
			return fmt.Errorf("%w (looked for %s)", errNoRDKit, strings.Join(looked[:min(len(looked), 3)], ", "))
		}
	}
	res, err := RunValidity(ctx, py, *in, *train, *smiles, env.Stderr)
	if err != nil {
		return fmt.Errorf("validity of %s: %w", *in, err)
	}
	if *asJSON {
		return WriteJSON(env.Stdout, struct {
			In    string `json:"in"`
			Train string `json:"train,omitempty"`
			*ValidityResult
		}{*in, *train, res})
	}
	w := env.Stdout
	fmt.Fprintf(w, "file:        %s\n", *in)
	fmt.Fprintf(w, "rdkit:       %s\n", res.RDKitVersion)
	fmt.Fprintf(w, "molecules:   %d\n", res.NMolecules)
	fmt.Fprintf(w, "validity:    %.4f  (%d/%d)\n", res.Validity, res.NValid, res.NMolecules)
	fmt.Fprintf(w, "uniqueness:  %.4f  (%d/%d)\n", res.Uniqueness, res.NUnique, res.NValid)
	if res.Novelty != nil {
		fmt.Fprintf(w, "novelty:     %.4f  (%d/%d; %d training SMILES from %s)\n", *res.Novelty, *res.NNovel, res.NUnique, res.NTrainSMILES, *train)
	}
	if *smiles {
		for _, m := range res.Molecules {
			s := "(invalid)"
			if m.SMILES != nil {
				s = *m.SMILES
			}
			fmt.Fprintf(w, "%d\t%s\n", m.ID, s)
		}
	}
	return nil
}
