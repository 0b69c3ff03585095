package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

// errStopScan ends a scan early without an error.
var errStopScan = errors.New("metrics: stop scan")

// ScanPositions calls fn, in table order, with the id and 3-D positions of every structure in
// path: a molecule table (QM9, e.g. generated molecules) or a table of 3-D particle
// configurations (e.g. `enflow sample` of a QM9 Positional run). Structures whose atom count is
// not nAtoms are skipped (nAtoms ≤ 0: none), and the scan stops after limit structures
// (limit ≤ 0: all). It returns the number passed to fn.
func ScanPositions(ctx context.Context, path string, nAtoms, limit int, fn func(id int64, pos [][3]float64) error) (int, error) {
	seen := 0
	visit := func(id int64, pos [][3]float64) error {
		if nAtoms > 0 && len(pos) != nAtoms {
			return nil
		}
		if err := fn(id, pos); err != nil {
			return err
		}
		seen++
		if limit > 0 && seen >= limit {
			return errStopScan
		}
		return nil
	}
	configs, err := isConfigTable(path)
	if err != nil {
		return 0, err
	}
	if configs {
		err = table.ScanConfigs(path, 0, func(cs []particles.Config) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range cs {
				c := &cs[i]
				if len(c.Positions)%3 != 0 {
					return fmt.Errorf("configuration %d (%s): %d coordinates are not 3-D positions", c.ID, c.System, len(c.Positions))
				}
				pos := make([][3]float64, len(c.Positions)/3)
				for a := range pos {
					copy(pos[a][:], c.Positions[3*a:3*a+3])
				}
				if err := visit(c.ID, pos); err != nil {
					return err
				}
			}
			return nil
		})
	} else {
		err = table.ScanMolecules(path, 0, func(ms []molecule.Molecule) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range ms {
				if err := visit(ms[i].ID, ms[i].Positions); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return seen, err
}

// isConfigTable reports whether path holds particle configurations (enflow.schema
// "particles/…") rather than molecules.
func isConfigTable(path string) (bool, error) {
	schema, err := table.Schema(path)
	if err != nil {
		return false, err
	}
	tag, _ := schema.Metadata().GetValue("enflow.schema")
	return strings.HasPrefix(tag, "particles/"), nil
}

// DistanceHistogramOf histograms the relative distances of the structures of a molecule or 3-D
// configuration table (see ScanPositions) and returns it with the number of structures.
func DistanceHistogramOf(ctx context.Context, path string, nAtoms, limit int) (*DistanceHistogram, int, error) {
	var h DistanceHistogram
	n, err := ScanPositions(ctx, path, nAtoms, limit, func(_ int64, pos [][3]float64) error {
		h.AddPositions(pos)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("distance histogram of %s: %w", path, err)
	}
	return &h, n, nil
}
