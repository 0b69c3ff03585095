package particles

import "fmt"

// System describes one particle system of the paper.
type System struct {
	Name      string // "dw4", "lj13" or "qm9_positional"
	Particles int    // number of particles
	Dim       int    // spatial dimension
}

// DW4 is four particles in 2D under the double-well pair potential.
var DW4 = System{Name: "dw4", Particles: 4, Dim: 2}

// LJ13 is thirteen particles in 3D under the Lennard-Jones potential with a harmonic restraint.
var LJ13 = System{Name: "lj13", Particles: 13, Dim: 3}

// QM9Positional is the QM9 Positional dataset of the paper (Table 3): QM9 molecules with
// exactly 19 atoms, positions only (en_flows main_qm9_pos.py). It has no potential; its
// configurations come from the QM9 ETL (`etl qm9 --positional`), not from etl particles.
var QM9Positional = System{Name: "qm9_positional", Particles: 19, Dim: 3}

// SystemByName returns DW4, LJ13 or QM9Positional ("qm9_positional", also spelled
// "qm9-positional").
func SystemByName(name string) (System, error) {
	switch name {
	case "dw4", "DW4":
		return DW4, nil
	case "lj13", "LJ13":
		return LJ13, nil
	case "qm9_positional", "qm9-positional":
		return QM9Positional, nil
	}
	return System{}, fmt.Errorf("particles: unknown system %q (want dw4, lj13 or qm9-positional)", name)
}

// HasPotential reports whether s has an energy function (DW4 and LJ13 do; QM9 Positional
// does not).
func (s System) HasPotential() bool { return s.Potential() != nil }

// Flat is the flattened configuration length Particles·Dim.
func (s System) Flat() int { return s.Particles * s.Dim }

// Config is one configuration: positions flattened particle-major (x0,y0[,z0],x1,…).
type Config struct {
	ID        int64     // row index in the source file (or generation order)
	Split     string    // "train", "val", "test" or ""
	System    string    // "dw4", "lj13" or "qm9_positional"
	Positions []float64 // len Particles·Dim, mean-free after import
	Energy    float64   // energy under the system's potential (each pair counted once)
}
