package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
)

func init() {
	Register(&Command{
		Name:    "etl qm9",
		Summary: "import QM9 (raw archive, Cormorant npz or download) into Parquet/Arrow tables",
		Run:     runETLQM9,
	})
}

// qm9Options are the flags of "etl qm9".
type qm9Options struct {
	archive         string
	npz             []string
	download        bool
	cache           string
	uncharacterized string
	split           string
	out             string
	positional      bool
	resplit         []float64 // train, valid, test fractions of --positional-resplit / --resplit (nil: keep splits)
	resplitSeed     uint64
	resplitAll      bool // --resplit: the molecule tables too
	formats         []string
	json            bool
}

func parseQM9Flags(env *Env, args []string) (*qm9Options, error) {
	o := &qm9Options{}
	fs := NewFlagSet(env, "etl qm9", "(--archive FILE.tar.bz2 | --npz FILE[,FILE] | --download) --out DIR [flags]")
	fs.StringVar(&o.archive, "archive", "", "input A: the official raw `archive` dsgdb9nsd.xyz.tar.bz2")
	fs.Var(listFlag{&o.npz}, "npz", "input B: Cormorant/EDM npz `files`; repeatable or comma-separated; split inferred from the name (train/valid/test)")
	fs.StringVar(&o.split, "split", "", "split name for every --npz file (train, valid or test), overriding the file name")
	fs.BoolVar(&o.download, "download", false, "download the official archive and uncharacterized list into --cache, then import the archive")
	defaultCache := filepath.Join(os.TempDir(), "enflow-qm9")
	if d, err := os.UserCacheDir(); err == nil {
		defaultCache = filepath.Join(d, "enflow", "qm9")
	}
	fs.StringVar(&o.cache, "cache", defaultCache, "download `directory` for --download")
	fs.StringVar(&o.uncharacterized, "uncharacterized", "", "uncharacterized list `file` (figshare format or one id per line); default: the built-in list (or the downloaded one with --download)")
	fs.StringVar(&o.out, "out", "", "output `directory`")
	fs.BoolVar(&o.positional, "positional", false, "also write the QM9 Positional subset (molecules with 19 atoms)")
	resplit, resplitAll := "", ""
	fs.StringVar(&resplit, "positional-resplit", "", "re-split the QM9 Positional subset into train,valid,test `percentages` (e.g. 80,10,10) by a seeded hash of the molecule id, "+
		"for inputs holding one split only (the shipped test npz); NOT the paper's split")
	fs.StringVar(&resplitAll, "resplit", "", "re-split ALL molecules (qm9_{train,valid,test} and, with --positional, the QM9 Positional subset) into train,valid,test `percentages` "+
		"by the same seeded hash of the gdb id, for inputs holding one split only (the shipped test npz, to train `--dataset qm9`); NOT the paper's split")
	fs.Uint64Var(&o.resplitSeed, "resplit-seed", 0, "`seed` of --resplit / --positional-resplit")
	formats := "parquet,arrow"
	fs.StringVar(&formats, "format", formats, "output `formats`, comma-separated: parquet, arrow")
	fs.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	inputs := 0
	for _, set := range []bool{o.archive != "", len(o.npz) > 0, o.download} {
		if set {
			inputs++
		}
	}
	if inputs != 1 {
		return nil, fmt.Errorf("%w: give exactly one of --archive, --npz, --download", ErrUsage)
	}
	if o.out == "" {
		return nil, fmt.Errorf("%w: --out is required", ErrUsage)
	}
	if o.split != "" {
		if len(o.npz) == 0 {
			return nil, fmt.Errorf("%w: --split applies to --npz input only", ErrUsage)
		}
		if !slices.Contains(qm9.SplitNames[:], o.split) {
			return nil, fmt.Errorf("%w: --split %q: want train, valid or test", ErrUsage, o.split)
		}
	}
	if resplitAll != "" {
		if resplit != "" {
			return nil, fmt.Errorf("%w: give --resplit or --positional-resplit, not both", ErrUsage)
		}
		fr, err := parseResplit(resplitAll)
		if err != nil {
			return nil, fmt.Errorf("%w: --resplit %q: %v", ErrUsage, resplitAll, err)
		}
		o.resplit, o.resplitAll = fr, true
	}
	if resplit != "" {
		if !o.positional {
			return nil, fmt.Errorf("%w: --positional-resplit needs --positional", ErrUsage)
		}
		fr, err := parseResplit(resplit)
		if err != nil {
			return nil, fmt.Errorf("%w: --positional-resplit %q: %v", ErrUsage, resplit, err)
		}
		o.resplit = fr
	}
	var err error
	if o.formats, err = parseTableFormats(formats); err != nil {
		return nil, err
	}
	return o, nil
}

func runETLQM9(ctx context.Context, env *Env, args []string) error {
	o, err := parseQM9Flags(env, args)
	if err != nil {
		return err
	}
	start := time.Now()
	_, statErr := os.Stat(o.out)
	createdOut := os.IsNotExist(statErr)
	sink := &qm9Sink{dir: o.out, formats: o.formats, positional: o.positional, resplit: o.resplit, resplitSeed: o.resplitSeed, resplitAll: o.resplitAll}
	summary, err := runQM9Import(ctx, env, o, sink)
	var files []string
	if err == nil {
		files, err = sink.commit()
	} else {
		sink.abort()
	}
	if err != nil {
		if createdOut {
			os.Remove(o.out) // only if still empty
		}
		return err
	}
	slices.Sort(files)
	summary["files"] = files
	summary["elapsed_s"] = time.Since(start).Round(time.Millisecond).Seconds()
	for _, s := range qm9.SplitNames {
		summary[s] = sink.counts[s]
		if o.positional {
			summary["positional_"+s] = sink.positionalCounts[s]
		}
	}
	summary["molecules"] = sink.molecules
	summary["atoms"] = sink.atoms
	return Summary(env, o.json, summary)
}

// runQM9Import reads the chosen input into sink and returns the input-specific summary.
func runQM9Import(ctx context.Context, env *Env, o *qm9Options, sink *qm9Sink) (map[string]any, error) {
	archive, uncharacterized := o.archive, o.uncharacterized
	if o.download {
		var progress io.Writer
		if qm9IsTerminal(env.Stderr) {
			progress = env.Stderr
		}
		paths, err := qm9.Download(ctx, qm9.OfficialFiles(), o.cache, progress)
		if err != nil {
			return nil, err
		}
		archive = paths[0]
		if uncharacterized == "" {
			uncharacterized = paths[1]
		}
	}
	split, err := qm9SplitFor(uncharacterized)
	if err != nil {
		return nil, err
	}
	if len(o.npz) > 0 {
		return qm9ImportNPZ(o, split, sink)
	}
	return qm9ImportArchive(ctx, env, archive, split, sink)
}

// qm9SplitFor is the standard split with the given uncharacterized list ("" = built-in).
func qm9SplitFor(uncharacterized string) (*qm9.Assignment, error) {
	if uncharacterized == "" {
		return qm9.DefaultSplit()
	}
	ids, err := qm9.ReadUncharacterized(uncharacterized)
	if err != nil {
		return nil, err
	}
	return qm9.StandardSplit(ids)
}

func qm9ImportArchive(ctx context.Context, env *Env, archive string, split *qm9.Assignment, sink *qm9Sink) (map[string]any, error) {
	progress, done := qm9ArchiveProgress(env.Stderr)
	var stats qm9.ArchiveStats
	err := qm9Pipeline(ctx, func(ctx context.Context, emit func(*molecule.Molecule) error) error {
		var err error
		stats, err = qm9.ReadArchive(ctx, archive, qm9.ArchiveOptions{Split: split, Progress: progress}, emit)
		return err
	}, func(m *molecule.Molecule) error {
		if err := sink.write(m); err != nil {
			return fmt.Errorf("qm9: %s: molecule %d: %w", filepath.Base(archive), m.ID, err)
		}
		return nil
	})
	done()
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"input":    archive,
		"members":  stats.Members,
		"excluded": stats.Excluded,
	}, nil
}

func qm9ImportNPZ(o *qm9Options, split *qm9.Assignment, sink *qm9Sink) (map[string]any, error) {
	seen := map[int64]string{}
	mismatched := 0
	for _, path := range o.npz {
		name := o.split
		if name == "" {
			if name = qm9.SplitFromFileName(path); name == "" {
				return nil, fmt.Errorf("%w: cannot infer the split of %s from its name; use --split", ErrUsage, path)
			}
		}
		mols, err := qm9.ReadNPZ(path, name)
		if err != nil {
			return nil, err
		}
		for i := range mols {
			m := &mols[i]
			if prev, dup := seen[m.ID]; dup {
				return nil, fmt.Errorf("qm9: %s: molecule %d already read from %s", filepath.Base(path), m.ID, prev)
			}
			seen[m.ID] = filepath.Base(path)
			if split.Of(m.ID) != m.Split {
				mismatched++
			}
			if err := sink.write(m); err != nil {
				return nil, fmt.Errorf("qm9: %s: molecule %d: %w", filepath.Base(path), m.ID, err)
			}
		}
	}
	if mismatched > 0 {
		slog.Warn("qm9: molecules whose split differs from the standard split of their id", "count", mismatched)
	}
	return map[string]any{
		"input":                  strings.Join(o.npz, ","),
		"split_differs_from_ids": mismatched,
	}, nil
}

// qm9Sink routes molecules to one writer per (subset, split, format), opened on first use so
// that only splits with rows get files.
type qm9Sink struct {
	dir         string
	formats     []string
	positional  bool
	resplit     []float64 // fractions of train, valid, test (nil: keep m.Split)
	resplitSeed uint64
	resplitAll  bool // resplit the molecule tables too, not only the positional subset

	writers          map[string]*table.MoleculeWriter // by output path
	order            []string                         // paths in opening order
	counts           map[string]int
	positionalCounts map[string]int
	molecules        int
	atoms            int
}

func (s *qm9Sink) write(m *molecule.Molecule) error {
	if s.writers == nil {
		s.writers = map[string]*table.MoleculeWriter{}
		s.counts = map[string]int{}
		s.positionalCounts = map[string]int{}
	}
	pm := m // the row of the QM9 Positional table; its split column says the file it is in
	if s.resplit != nil {
		c := *m
		c.Split = resplitOf(m.ID, s.resplitSeed, s.resplit)
		pm = &c
		if s.resplitAll {
			m = &c
		}
	}
	if err := s.writeTo("qm9_"+m.Split, m); err != nil {
		return err
	}
	s.counts[m.Split]++
	s.molecules++
	s.atoms += m.NAtoms()
	if s.positional && qm9.IsPositional(m) {
		if err := s.writeTo("qm9_positional_"+pm.Split, pm); err != nil {
			return err
		}
		s.positionalCounts[pm.Split]++
	}
	return nil
}

// parseResplit reads "train,valid,test" percentages (or fractions) summing to 100 (or 1).
func parseResplit(v string) ([]float64, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return nil, errors.New("want three numbers: train,valid,test")
	}
	fr := make([]float64, 3)
	sum := 0.0
	for i, p := range parts {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || x < 0 || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%q is not a non-negative number", p)
		}
		fr[i], sum = x, sum+x
	}
	if sum <= 0 {
		return nil, errors.New("the parts sum to 0")
	}
	for i := range fr {
		fr[i] /= sum
	}
	return fr, nil
}

// resplitOf assigns molecule id to train, valid or test with probabilities fr, from a
// splitmix64 hash of (id, seed): deterministic, independent of the input order.
func resplitOf(id int64, seed uint64, fr []float64) string {
	z := uint64(id) + seed*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	u := float64(z>>11) / (1 << 53)
	switch {
	case u < fr[0]:
		return "train"
	case u < fr[0]+fr[1]:
		return "valid"
	}
	return "test"
}

func (s *qm9Sink) writeTo(base string, m *molecule.Molecule) error {
	for _, f := range s.formats {
		path := filepath.Join(s.dir, base+"."+f)
		w, ok := s.writers[path]
		if !ok {
			var err error
			if w, err = table.NewMoleculeWriter(path); err != nil {
				return err
			}
			s.writers[path] = w
			s.order = append(s.order, path)
		}
		if err := w.Write(m); err != nil {
			return err
		}
	}
	return nil
}

// abort discards every output.
func (s *qm9Sink) abort() {
	for _, w := range s.writers {
		w.Abort()
	}
}

// commit finishes every output; if one fails, the others are discarded and the files
// already committed are removed, so no partial output is left.
func (s *qm9Sink) commit() ([]string, error) {
	if s.molecules == 0 {
		s.abort()
		return nil, errors.New("qm9: no molecules to write")
	}
	var done []string
	for _, path := range s.order {
		if err := s.writers[path].Commit(); err != nil {
			s.abort()
			for _, p := range done {
				os.Remove(p)
			}
			return nil, err
		}
		done = append(done, path)
	}
	return done, nil
}

// qm9Pipeline runs produce (decompressing and parsing) and consume (writing tables) on two
// goroutines connected by a buffered channel. The first error wins; a consumer error
// cancels the producer.
func qm9Pipeline(ctx context.Context, produce func(context.Context, func(*molecule.Molecule) error) error, consume func(*molecule.Molecule) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan *molecule.Molecule, 1024)
	var produceErr error
	go func() {
		defer close(ch)
		produceErr = produce(ctx, func(m *molecule.Molecule) error {
			select {
			case ch <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var consumeErr error
	for m := range ch {
		if consumeErr == nil {
			if consumeErr = consume(m); consumeErr != nil {
				cancel()
			}
		}
	}
	if consumeErr != nil {
		return consumeErr
	}
	return produceErr
}

func qm9IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// qm9ArchiveProgress returns a progress callback for the archive reader: a progress bar on
// a terminal, otherwise a line every 20,000 members.
func qm9ArchiveProgress(w io.Writer) (func(int), func()) {
	if !qm9IsTerminal(w) {
		return func(n int) {
			if n%20000 == 0 {
				fmt.Fprintf(w, "qm9: %d molecules read\n", n)
			}
		}, func() {}
	}
	bar := progressbar.NewOptions(qm9.NumMolecules,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("qm9 archive"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("molecules"),
		progressbar.OptionShowIts(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
	)
	return func(n int) { bar.Set(n) }, func() { bar.Finish(); fmt.Fprintln(w) }
}

// parseTableFormats reads the --format list of the ETL commands: parquet and/or arrow,
// comma-separated, duplicates dropped.
func parseTableFormats(formats string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(formats, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch {
		case f == "":
		case f != "parquet" && f != "arrow":
			return nil, fmt.Errorf("%w: --format %q: want parquet and/or arrow", ErrUsage, f)
		case !slices.Contains(out, f):
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: --format is empty", ErrUsage)
	}
	return out, nil
}
