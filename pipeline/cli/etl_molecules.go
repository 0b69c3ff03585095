package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/molfile"
	"github.com/enflow/enflow/etl/table"
)

func init() {
	Register(&Command{
		Name:    "etl molecules",
		Summary: "import your own molecules (XYZ directory, extended XYZ or SDF V2000) into molecules_{split}.parquet + molecules.json",
		Run:     runETLMolecules,
	})
}

// MoleculesDescriptionFile is the dataset description written next to the tables.
const MoleculesDescriptionFile = "molecules.json"

// moleculeSplits are the split names of "etl molecules", in file order.
var moleculeSplits = [...]string{"train", "valid", "test"}

// MoleculesDescription is the content of molecules.json: what a consumer (enflow train
// --dataset molecules) needs to build one-hot features and size priors without scanning the
// tables.
type MoleculesDescription struct {
	Schema     string            `json:"schema"`      // "enflow.molecules/v1"
	Table      string            `json:"table"`       // table schema tag of the files ("molecule/v1")
	Elements   []int             `json:"elements"`    // atomic numbers in one-hot order (ascending Z)
	Symbols    []string          `json:"symbols"`     // element symbols, same order
	MaxAtoms   int               `json:"max_atoms"`   // largest molecule over all splits
	NMolecules map[string]int    `json:"n_molecules"` // per split (all three keys present)
	NAtoms     map[string]int    `json:"n_atoms"`     // atoms per split
	SizeHist   map[string]int    `json:"size_hist_train"`
	Files      map[string]string `json:"files"`     // split → file name (relative to the directory); splits with rows only
	Format     string            `json:"format"`    // input format: xyz, extxyz or sdf
	Sources    []string          `json:"sources"`   // input files, in reading order
	Split      string            `json:"split"`     // "hash 80,10,10 seed 0" or "none (all train)"
	SplitKey   string            `json:"split_key"` // what the split hash is computed from
	IDs        string            `json:"ids"`       // how the id column is numbered
}

// moleculesOptions are the flags of "etl molecules".
type moleculesOptions struct {
	xyzDir, extxyz, sdf string
	out                 string
	split               []float64 // nil: all train
	splitText           string
	seed                uint64
	elements            []int // nil: from the data
	formats             []string
	json                bool
}

func parseMoleculesFlags(env *Env, args []string) (*moleculesOptions, error) {
	o := &moleculesOptions{}
	fs := NewFlagSet(env, "etl molecules", "(--xyz DIR | --extxyz FILE | --sdf FILE) --out DIR [--split-by-hash 80,10,10] [--seed S] [--elements H,C,N,O,S,Cl] [--json]")
	fs.StringVar(&o.xyzDir, "xyz", "", "input: a `directory` of plain .xyz files (one or more molecules each)")
	fs.StringVar(&o.extxyz, "extxyz", "", "input: an extended XYZ `file` (multi-frame)")
	fs.StringVar(&o.sdf, "sdf", "", "input: an SDF/MOL V2000 `file` (multi-record)")
	fs.StringVar(&o.out, "out", "", "output `directory` for molecules_{train,valid,test}.parquet and molecules.json")
	fs.StringVar(&o.splitText, "split-by-hash", "", "split into train,valid,test `percentages` (e.g. 80,10,10) by a seeded hash of file name and record number; default: everything in train")
	fs.Uint64Var(&o.seed, "seed", 0, "`seed` of --split-by-hash")
	elements := ""
	fs.StringVar(&elements, "elements", "", "the element `symbols` of the one-hot encoding, comma-separated (e.g. H,C,N,O,S,Cl); a molecule with another element is an error; default: the elements in the data")
	formats := "parquet"
	fs.StringVar(&formats, "format", formats, "output `formats`, comma-separated: parquet, arrow")
	fs.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	n := 0
	for _, s := range []string{o.xyzDir, o.extxyz, o.sdf} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: give exactly one of --xyz, --extxyz, --sdf", ErrUsage)
	}
	if o.out == "" {
		return nil, fmt.Errorf("%w: --out is required", ErrUsage)
	}
	if o.splitText != "" {
		fr, err := parseResplit(o.splitText)
		if err != nil {
			return nil, fmt.Errorf("%w: --split-by-hash %q: %v", ErrUsage, o.splitText, err)
		}
		o.split = fr
	}
	if elements != "" {
		for _, s := range strings.Split(elements, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			z := molecule.NumberOfSymbol(s)
			if z == 0 {
				return nil, fmt.Errorf("%w: --elements: %q is not an element symbol", ErrUsage, s)
			}
			if !slices.Contains(o.elements, z) {
				o.elements = append(o.elements, z)
			}
		}
		if len(o.elements) == 0 {
			return nil, fmt.Errorf("%w: --elements is empty", ErrUsage)
		}
		slices.Sort(o.elements)
	}
	var err error
	if o.formats, err = parseTableFormats(formats); err != nil {
		return nil, err
	}
	return o, nil
}

// moleculeSplitOf assigns a molecule to train, valid or test from its stable key: the
// FNV-1a 64-bit hash of the key is mixed with the seed by the same splitmix64 helper as
// "etl qm9 --positional-resplit" (resplitOf), so the split does not depend on input order.
func moleculeSplitOf(key string, seed uint64, fr []float64) string {
	h := fnv.New64a()
	h.Write([]byte(key)) // never fails
	return resplitOf(int64(h.Sum64()), seed, fr)
}

// readMoleculeRecords reads the chosen input.
func readMoleculeRecords(o *moleculesOptions) ([]molfile.Record, molfile.Format, []string, error) {
	switch {
	case o.xyzDir != "":
		rs, err := molfile.ReadXYZDir(o.xyzDir)
		var sources []string
		for _, r := range rs {
			if len(sources) == 0 || sources[len(sources)-1] != r.File {
				sources = append(sources, r.File)
			}
		}
		return rs, molfile.XYZ, sources, err
	case o.extxyz != "":
		rs, err := molfile.ReadFile(molfile.ExtXYZ, o.extxyz)
		return rs, molfile.ExtXYZ, []string{o.extxyz}, err
	default:
		rs, err := molfile.ReadFile(molfile.SDF, o.sdf)
		return rs, molfile.SDF, []string{o.sdf}, err
	}
}

func runETLMolecules(ctx context.Context, env *Env, args []string) error {
	o, err := parseMoleculesFlags(env, args)
	if err != nil {
		return err
	}
	start := time.Now()
	recs, format, sources, err := readMoleculeRecords(o)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	desc, err := describeMolecules(o, recs, format, sources)
	if err != nil {
		return err
	}
	files, err := writeMolecules(o, recs, desc)
	if err != nil {
		return err
	}
	slog.Info("etl molecules", "molecules", len(recs), "out", o.out, "elapsed", time.Since(start).Round(time.Millisecond))
	return Summary(env, o.json, map[string]any{
		"out":         o.out,
		"files":       files,
		"format":      desc.Format,
		"molecules":   len(recs),
		"n_molecules": desc.NMolecules,
		"elements":    desc.Elements,
		"symbols":     desc.Symbols,
		"max_atoms":   desc.MaxAtoms,
		"split":       desc.Split,
		"elapsed_s":   time.Since(start).Round(time.Millisecond).Seconds(),
	})
}

// describeMolecules numbers the records (ids 1-based in input order), assigns splits, checks
// the element set and builds molecules.json. It changes recs in place and writes nothing.
func describeMolecules(o *moleculesOptions, recs []molfile.Record, format molfile.Format, sources []string) (*MoleculesDescription, error) {
	d := &MoleculesDescription{
		Schema: "enflow.molecules/v1", Table: table.MoleculeSchemaTag,
		NMolecules: map[string]int{}, NAtoms: map[string]int{}, SizeHist: map[string]int{}, Files: map[string]string{},
		Format: format.String(), Sources: sources,
		Split:    "none (all train)",
		SplitKey: `FNV-1a 64 of "<file base name>#<record number in the file, 1-based>" (the source column), mixed with --seed by splitmix64`,
		IDs:      "1-based, in input order (files in lexical order for --xyz)",
	}
	if o.split != nil {
		pct := make([]string, 3)
		for i, f := range o.split {
			pct[i] = strconv.FormatFloat(100*f, 'g', 6, 64)
		}
		d.Split = fmt.Sprintf("hash %s seed %d", strings.Join(pct, ","), o.seed)
	}
	for _, s := range moleculeSplits {
		d.NMolecules[s], d.NAtoms[s] = 0, 0
	}
	allowed := map[int]bool{}
	for _, z := range o.elements {
		allowed[z] = true
	}
	seen := map[int]bool{}
	for i := range recs {
		r := &recs[i]
		m := &r.Molecule
		m.ID = int64(i + 1)
		for k, z := range m.Z {
			if o.elements != nil && !allowed[z] {
				return nil, &molfile.Error{File: r.File, Record: r.Index, Line: r.AtomLines[k],
					Err: fmt.Errorf("atom %d: element %s is not in --elements %s", k+1, molecule.Symbol(z), strings.Join(symbolsOf(o.elements), ","))}
			}
			seen[z] = true
		}
		m.Split = "train"
		if o.split != nil {
			m.Split = moleculeSplitOf(m.Source, o.seed, o.split)
		}
		d.NMolecules[m.Split]++
		d.NAtoms[m.Split] += m.NAtoms()
		d.MaxAtoms = max(d.MaxAtoms, m.NAtoms())
		if m.Split == "train" {
			d.SizeHist[strconv.Itoa(m.NAtoms())]++
		}
	}
	d.Elements = o.elements
	if d.Elements == nil {
		for z := range seen {
			d.Elements = append(d.Elements, z)
		}
		slices.Sort(d.Elements)
	}
	d.Symbols = symbolsOf(d.Elements)
	return d, nil
}

func symbolsOf(zs []int) []string {
	out := make([]string, len(zs))
	for i, z := range zs {
		out[i] = molecule.Symbol(z)
	}
	return out
}

// writeMolecules writes every split table and molecules.json. Each file goes through a
// temporary name (etl/atomicfile); if anything fails, the files committed so far are
// removed, and an output directory this call created is removed again, so no partial
// output is left. After success, stale molecules_{split} files of splits without rows
// (from an earlier run) are removed so that the directory matches molecules.json.
func writeMolecules(o *moleculesOptions, recs []molfile.Record, d *MoleculesDescription) (files []string, err error) {
	_, statErr := os.Stat(o.out)
	createdOut := errors.Is(statErr, os.ErrNotExist)
	var writers []*table.MoleculeWriter
	var committed []string
	defer func() {
		if err == nil {
			return
		}
		for _, w := range writers {
			w.Abort()
		}
		for _, p := range committed {
			os.Remove(p)
		}
		if createdOut {
			os.Remove(o.out) // only if empty
		}
	}()
	var paths []string
	for _, split := range moleculeSplits {
		if d.NMolecules[split] == 0 {
			continue
		}
		for _, f := range o.formats {
			name := "molecules_" + split + "." + f
			if f == "parquet" {
				d.Files[split] = name
			} else if _, ok := d.Files[split]; !ok {
				d.Files[split] = name
			}
			path := filepath.Join(o.out, name)
			w, err := table.NewMoleculeWriter(path)
			if err != nil {
				return nil, err
			}
			writers = append(writers, w)
			paths = append(paths, path)
			for i := range recs {
				if r := &recs[i]; r.Molecule.Split == split {
					if err := w.Write(&r.Molecule); err != nil {
						return nil, fmt.Errorf("%s: record %d: %w", r.File, r.Index, err)
					}
				}
			}
		}
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	for i, w := range writers {
		if err := w.Commit(); err != nil {
			return nil, err
		}
		committed = append(committed, paths[i])
	}
	descPath := filepath.Join(o.out, MoleculesDescriptionFile)
	if err := atomicfile.WriteFile(descPath, js.Bytes()); err != nil {
		return nil, err
	}
	committed = append(committed, descPath)
	for _, split := range moleculeSplits {
		if d.NMolecules[split] > 0 {
			continue
		}
		for _, f := range []string{"parquet", "arrow"} {
			os.Remove(filepath.Join(o.out, "molecules_"+split+"."+f)) // stale output of an earlier run
		}
	}
	for _, p := range committed {
		files = append(files, filepath.Base(p))
	}
	return files, nil
}
