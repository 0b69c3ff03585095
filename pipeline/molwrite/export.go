package molwrite

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
)

// Options selects what Export writes.
type Options struct {
	Format Format
	// PerMolecule writes one file per molecule into the directory out, named
	// mol_<id>.<ext> (id zero-padded to 6 digits); otherwise out is one file.
	PerMolecule bool
}

// Stats summarises an export.
type Stats struct {
	Out       string `json:"out"`
	Format    string `json:"format"`
	Molecules int    `json:"molecules"`
	Atoms     int    `json:"atoms"`
	Files     int    `json:"files"`
	Bonds     int    `json:"bonds"`
	Charged   int    `json:"charged_atoms"` // atoms with an inferred formal charge (SDF)
}

// scanBatch is the number of molecules held in memory at a time.
const scanBatch = 1024

// FileName returns the per-molecule file name of m.
func FileName(f Format, m *molecule.Molecule) string {
	return fmt.Sprintf("mol_%06d%s", m.ID, f.Ext())
}

// Export reads the molecule table in (.parquet or .arrow, molecule/v1) and writes its
// molecules to out in o.Format. Every file is written atomically: an error leaves no partial
// file behind (with PerMolecule, the files already completed stay).
func Export(ctx context.Context, in, out string, o Options) (*Stats, error) {
	if o.Format < XYZ || o.Format > SDF {
		return nil, fmt.Errorf("molwrite: no output format")
	}
	st := &Stats{Out: out, Format: o.Format.String()}
	count := func(m *molecule.Molecule) error {
		st.Molecules++
		st.Atoms += len(m.Z)
		if o.Format == SDF {
			b, err := Bonds(m)
			if err != nil {
				return err
			}
			st.Bonds += len(b)
			for _, q := range FormalCharges(m.Z, b) {
				if q != 0 {
					st.Charged++
				}
			}
		}
		return nil
	}
	scan := func(fn func(i int, m *molecule.Molecule) error) error {
		row := 0
		return table.ScanMolecules(in, scanBatch, func(ms []molecule.Molecule) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range ms {
				if err := fn(row, &ms[i]); err != nil {
					return fmt.Errorf("%s: row %d (id %d): %w", in, row, ms[i].ID, err)
				}
				row++
			}
			return nil
		})
	}
	if !o.PerMolecule {
		err := atomicfile.Write(out, func(w io.Writer) error {
			err := scan(func(_ int, m *molecule.Molecule) error {
				if err := Write(w, o.Format, m); err != nil {
					return err
				}
				return count(m)
			})
			if err == nil && st.Molecules == 0 {
				err = fmt.Errorf("%s: no molecules", in)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("molwrite: export to %s: %w", out, err)
		}
		st.Files = 1
		return st, nil
	}
	if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("molwrite: --per-molecule: %s exists and is not a directory", out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("molwrite: %w", err)
	}
	seen := map[string]int{}
	err := scan(func(row int, m *molecule.Molecule) error {
		name := FileName(o.Format, m)
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("field id: duplicate id %d (also row %d): per-molecule file %s would be overwritten", m.ID, prev, name)
		}
		seen[name] = row
		if err := atomicfile.Write(filepath.Join(out, name), func(w io.Writer) error {
			return Write(w, o.Format, m)
		}); err != nil {
			return err
		}
		st.Files++
		return count(m)
	})
	if err != nil {
		return nil, fmt.Errorf("molwrite: export to %s: %w", out, err)
	}
	if st.Molecules == 0 {
		return nil, fmt.Errorf("molwrite: %s: no molecules", in)
	}
	return st, nil
}
