package metrics

import (
	"fmt"
	"slices"
)

// AtomStability judges every atom of one molecule (atomic numbers z, positions in Å) on
// exactly the path Stability.AddNumbers takes (the reference tables for H, C, N, O, F, the
// extended ones otherwise) and returns, per atom, whether its total bond order is an allowed
// valence, with the molecule verdict. For a molecule with an uncovered element, stable is nil
// and r.Uncovered is set. Pictures use it to mark the atoms the metric counts as unstable.
func AtomStability(z []int, pos [][3]float64) (stable []bool, r MoleculeResult, err error) {
	var s Stability
	r, err = s.AddNumbers(z, pos)
	if err != nil {
		return nil, r, fmt.Errorf("metrics: atom stability: %w", err)
	}
	if r.Uncovered {
		return nil, r, nil
	}
	// Both paths of AddNumbers leave the per-atom bond-order totals in s.totals; for H, C, N,
	// O and F allowedValences equals Valence, so one rule serves both.
	stable = make([]bool, len(z))
	n := 0
	for i, zi := range z {
		if slices.Contains(allowedValences[zi], s.totals[i]) {
			stable[i] = true
			n++
		}
	}
	if n != r.NStable {
		return nil, r, fmt.Errorf("metrics: atom stability: %d stable atoms, the molecule verdict counts %d", n, r.NStable)
	}
	return stable, r, nil
}
