package particles

import "fmt"

// System describes one particle system of the paper.
type System struct {
	Name      string // "dw4" or "lj13"
	Particles int    // number of particles
	Dim       int    // spatial dimension
}

// DW4 is four particles in 2D under the double-well pair potential.
var DW4 = System{Name: "dw4", Particles: 4, Dim: 2}

// LJ13 is thirteen particles in 3D under the Lennard-Jones potential with a harmonic restraint.
var LJ13 = System{Name: "lj13", Particles: 13, Dim: 3}

// SystemByName returns DW4 or LJ13.
func SystemByName(name string) (System, error) {
	switch name {
	case "dw4", "DW4":
		return DW4, nil
	case "lj13", "LJ13":
		return LJ13, nil
	}
	return System{}, fmt.Errorf("particles: unknown system %q (want dw4 or lj13)", name)
}

// Flat is the flattened configuration length Particles·Dim.
func (s System) Flat() int { return s.Particles * s.Dim }

// Config is one configuration: positions flattened particle-major (x0,y0[,z0],x1,…).
type Config struct {
	ID        int64     // row index in the source file (or generation order)
	Split     string    // "train", "val", "test" or ""
	System    string    // "dw4" or "lj13"
	Positions []float64 // len Particles·Dim, mean-free after import
	Energy    float64   // energy under the system's potential (each pair counted once)
}
