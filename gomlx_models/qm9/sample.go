package qm9

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/pipeline/metrics"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// SampleOptions configure Sample.
type SampleOptions struct {
	N     int    // molecules to draw
	Seed  uint64 // seeds the sizes, the prior draws and nothing else
	Batch int    // molecules per CNF solve (all of one size); default 100
	// Sizes, when non-nil, fixes the molecule sizes instead of drawing them from p(N).
	Sizes []int
	// Progress, if set, is called after each batch with the molecules done so far.
	Progress func(done, total int, last BatchInfo)
}

// BatchInfo describes one sampling batch.
type BatchInfo struct {
	Atoms, Molecules, NFE int
	Wall                  time.Duration
	Retried               bool // the batch solve failed and its molecules were drawn one by one
}

// SampleResult holds the sampled molecules (ID = draw index, 0-based, in draw order).
type SampleResult struct {
	Molecules []molecule.Molecule
	// Charges are the decoded integer charges (floor of the charge channel) per molecule.
	Charges [][]int
	// ChargeMatches counts atoms whose decoded charge equals the atomic number of their
	// argmax type; Atoms counts all atoms.
	ChargeMatches, Atoms int
	// Failed counts molecules whose solve failed or produced non-finite values; as en_flows
	// does for NaNs, they are returned with every atom an H at the origin.
	Failed int
	NFE    int
	Wall   time.Duration
}

// ChargeConsistency is ChargeMatches/Atoms.
func (r *SampleResult) ChargeConsistency() float64 {
	if r.Atoms == 0 {
		return math.NaN()
	}
	return float64(r.ChargeMatches) / float64(r.Atoms)
}

// Sample draws molecules as en_flows' sampler does (REFERENCE §3.4, §4.6): N ~ p(N) (the QM9
// train histogram), z = [z_x (CoG-free), z_h (standard normal)] with all N atoms present,
// reverse ODE from t = 1 to 0 (the model's CNF solver, dopri5 rtol = atol = 1e-4 by default),
// ActNorm⁻¹, then atom type = argmax of the 5 categorical channels and charge = floor of the
// charge channel. Molecules of the same size share a solve (up to o.Batch per solve); a batch
// whose solve fails is redrawn one molecule at a time. Positions are in Å, centred.
func (m *Model) Sample(ctx context.Context, o SampleOptions) (*SampleResult, error) {
	start := time.Now()
	if o.Batch <= 0 {
		o.Batch = 100
	}
	sizes := o.Sizes
	if sizes == nil {
		if o.N <= 0 {
			return nil, fmt.Errorf("qm9: number of samples %d must be positive", o.N)
		}
		sizes = metrics.NewNodeSampler(o.Seed).SampleN(o.N)
	}
	for i, n := range sizes {
		if n < 1 || n > molecule.MaxAtoms {
			return nil, fmt.Errorf("qm9: sample %d: size %d outside [1, %d]", i, n, molecule.MaxAtoms)
		}
	}
	total := len(sizes)
	res := &SampleResult{Molecules: make([]molecule.Molecule, total), Charges: make([][]int, total)}
	// Group draw indices by size; batches of one size, largest sizes first (slowest first, so
	// progress estimates are pessimistic rather than optimistic).
	bySize := map[int][]int{}
	for i, n := range sizes {
		bySize[n] = append(bySize[n], i)
	}
	order := make([]int, 0, len(bySize))
	for n := range bySize {
		order = append(order, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(order)))
	rng := rand.New(rand.NewPCG(o.Seed, 0x7361_6d70_6c65_7a31)) // "samplez1"
	done := 0
	for _, n := range order {
		idx := bySize[n]
		for s := 0; s < len(idx); s += o.Batch {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			chunk := idx[s:min(s+o.Batch, len(idx))]
			bs := time.Now()
			info := BatchInfo{Atoms: n, Molecules: len(chunk)}
			seed := rng.Uint64()
			out, nfe, err := m.sampleBatch(len(chunk), n, seed)
			info.NFE += nfe
			if err != nil { // redraw one by one (a single diverging molecule can stall a solve)
				info.Retried = true
				out = make([]decoded, len(chunk))
				for k := range chunk {
					one, nfe, err := m.sampleBatch(1, n, seed+uint64(k)+1)
					info.NFE += nfe
					if err != nil {
						out[k] = failedMolecule(n)
						continue
					}
					out[k] = one[0]
				}
			}
			for k, i := range chunk {
				d := out[k]
				mol := molecule.Molecule{ID: int64(i), Split: "sample", Z: make([]int, n), Positions: make([][3]float64, n), Omega1: math.NaN()}
				for p := range mol.Props {
					mol.Props[p] = math.NaN()
				}
				if d.failed {
					res.Failed++
				}
				for a := range n {
					mol.Z[a] = molecule.Numbers[d.types[a]]
					copy(mol.Positions[a][:], d.pos[a*PosDims:(a+1)*PosDims])
					if d.charges[a] == mol.Z[a] {
						res.ChargeMatches++
					}
				}
				res.Atoms += n
				res.Molecules[i], res.Charges[i] = mol, d.charges
			}
			res.NFE += info.NFE
			done += len(chunk)
			info.Wall = time.Since(bs)
			if o.Progress != nil {
				o.Progress(done, total, info)
			}
		}
	}
	res.Wall = time.Since(start)
	return res, nil
}

// decoded is one sampled molecule.
type decoded struct {
	pos     []float64 // n·3
	types   []int
	charges []int
	failed  bool
}

func failedMolecule(n int) decoded {
	return decoded{pos: make([]float64, n*PosDims), types: make([]int, n), charges: make([]int, n), failed: true}
}

// sampleBatch draws b molecules of n atoms with one solve.
func (m *Model) sampleBatch(b, n int, seed uint64) ([]decoded, int, error) {
	ones := make([]float64, b*n)
	for i := range ones {
		ones[i] = 1
	}
	mask, err := prior.FromFloat64(m.cfg.DType, ones, b, n)
	if err != nil {
		return nil, 0, err
	}
	defer freeAll([]*tensors.Tensor{mask})
	y, st, err := m.flow.Sample(b, n, Channels, mask, seed)
	if err != nil {
		return nil, st.Forward.NFE, fmt.Errorf("qm9: sampling %d molecules of %d atoms: %w", b, n, err)
	}
	pos, types, charges, finite, err := m.Decode(y, mask)
	freeAll([]*tensors.Tensor{y})
	if err != nil {
		return nil, st.Forward.NFE, err
	}
	out := make([]decoded, b)
	for i := range b {
		d := decoded{pos: pos[i*n*PosDims : (i+1)*n*PosDims], types: types[i*n : (i+1)*n], charges: charges[i*n : (i+1)*n]}
		for _, ok := range finite[i*n : (i+1)*n] {
			if !ok {
				d = failedMolecule(n) // en_flows: "NaN occured, setting z to zero" → all H at the origin
				break
			}
		}
		out[i] = d
	}
	return out, st.Forward.NFE, nil
}
