package ode

import (
	"fmt"
	"sort"
	"strings"
)

// Tableau is the Butcher tableau of an explicit Runge–Kutta method.
//
// Stage i (0-based) is evaluated at t0 + C[i]·dt on y0 + dt·Σ_{j<i} A[i][j]·k_j. The propagated
// solution is y1 = y0 + dt·Σ_j B[j]·k_j and, for adaptive methods, the local error estimate is
// dt·Σ_j E[j]·k_j (E = B − B̂, the difference to the embedded lower-order solution).
//
// FSAL ("first same as last") tableaux have A[s-1] == B and C[s-1] == 1, so the last stage is
// f(t1, y1) and is reused as the first stage of the next step. This is the torchdiffeq layout of
// dopri5 (6 + 1 stages, 7 error weights).
type Tableau struct {
	Name string
	// Order is the order of the propagated solution. Adaptive step-size control uses 1/Order as
	// the exponent of the error ratio, as torchdiffeq does (order 5 for dopri5); the initial step
	// selection uses Order−1 (torchdiffeq passes `self.order - 1`).
	Order int
	C     []float64
	A     [][]float64
	B     []float64
	// E are the error weights; nil for fixed-step methods.
	E    []float64
	FSAL bool
}

// Stages returns the number of stages (function evaluations per step, including the FSAL stage).
func (tab *Tableau) Stages() int { return len(tab.C) }

// Adaptive reports whether the tableau has an embedded error estimate.
func (tab *Tableau) Adaptive() bool { return tab.E != nil }

// NFEPerStep is the number of new function evaluations per step: FSAL methods reuse the last
// stage of the previous step.
func (tab *Tableau) NFEPerStep() int {
	if tab.FSAL {
		return tab.Stages() - 1
	}
	return tab.Stages()
}

func (tab *Tableau) validate() error {
	s := len(tab.C)
	if s == 0 || len(tab.A) != s || len(tab.B) != s {
		return fmt.Errorf("ode: tableau %q: inconsistent number of stages", tab.Name)
	}
	for i, row := range tab.A {
		if len(row) != i {
			return fmt.Errorf("ode: tableau %q: row %d of A must have %d entries, got %d", tab.Name, i, i, len(row))
		}
	}
	if tab.E != nil && len(tab.E) != s {
		return fmt.Errorf("ode: tableau %q: E must have %d entries", tab.Name, s)
	}
	if tab.FSAL {
		last := tab.A[s-1]
		for j := range last {
			if last[j] != tab.B[j] {
				return fmt.Errorf("ode: tableau %q: FSAL requires A[s-1] == B", tab.Name)
			}
		}
		if tab.B[s-1] != 0 || tab.C[s-1] != 1 {
			return fmt.Errorf("ode: tableau %q: FSAL requires B[s-1] == 0 and C[s-1] == 1", tab.Name)
		}
	}
	return nil
}

// Dopri5 is the Dormand–Prince 5(4) pair (Dormand & Prince 1980; Shampine 1986 coefficients), as in
// torchdiffeq's `dopri5` and diffrax's `Dopri5`.
var Dopri5 = &Tableau{
	Name:  "dopri5",
	Order: 5,
	C:     []float64{0, 1. / 5, 3. / 10, 4. / 5, 8. / 9, 1, 1},
	A: [][]float64{
		{},
		{1. / 5},
		{3. / 40, 9. / 40},
		{44. / 45, -56. / 15, 32. / 9},
		{19372. / 6561, -25360. / 2187, 64448. / 6561, -212. / 729},
		{9017. / 3168, -355. / 33, 46732. / 5247, 49. / 176, -5103. / 18656},
		{35. / 384, 0, 500. / 1113, 125. / 192, -2187. / 6784, 11. / 84},
	},
	B: []float64{35. / 384, 0, 500. / 1113, 125. / 192, -2187. / 6784, 11. / 84, 0},
	E: []float64{
		35./384 - 1951./21600,
		0,
		500./1113 - 22642./50085,
		125./192 - 451./720,
		-2187./6784 - -12231./42400,
		11./84 - 649./6300,
		-1. / 60,
	},
	FSAL: true,
}

// RK4 is the 3/8-rule fourth-order Runge–Kutta method. This is what torchdiffeq's fixed-grid
// `rk4` method uses (`rk4_alt_step_func`: "smaller error with slightly more compute").
var RK4 = &Tableau{
	Name:  "rk4",
	Order: 4,
	C:     []float64{0, 1. / 3, 2. / 3, 1},
	A: [][]float64{
		{},
		{1. / 3},
		{-1. / 3, 1},
		{1, -1, 1},
	},
	B: []float64{1. / 8, 3. / 8, 3. / 8, 1. / 8},
}

// RK4Classic is the classic fourth-order Runge–Kutta method (torchdiffeq's `rk4_step_func`, not
// used by its `rk4` solver).
var RK4Classic = &Tableau{
	Name:  "rk4classic",
	Order: 4,
	C:     []float64{0, 0.5, 0.5, 1},
	A: [][]float64{
		{},
		{0.5},
		{0, 0.5},
		{0, 0, 1},
	},
	B: []float64{1. / 6, 1. / 3, 1. / 3, 1. / 6},
}

// Euler is the explicit Euler method.
var Euler = &Tableau{
	Name:  "euler",
	Order: 1,
	C:     []float64{0},
	A:     [][]float64{{}},
	B:     []float64{1},
}

// registry maps method names to tableaux, like torchdiffeq's SOLVERS dict.
var registry = map[string]*Tableau{}

// Register adds a tableau to the registry of methods usable by name in Options.Method.
func Register(tab *Tableau) error {
	if err := tab.validate(); err != nil {
		return err
	}
	registry[strings.ToLower(tab.Name)] = tab
	return nil
}

func init() {
	for _, tab := range []*Tableau{Dopri5, RK4, RK4Classic, Euler} {
		if err := Register(tab); err != nil {
			panic(err)
		}
	}
}

// Lookup returns the tableau registered under name (case-insensitive).
func Lookup(name string) (*Tableau, error) {
	tab, ok := registry[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("ode: unknown method %q (known: %s)", name, strings.Join(Methods(), ", "))
	}
	return tab, nil
}

// Methods lists the registered method names, sorted.
func Methods() []string {
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
