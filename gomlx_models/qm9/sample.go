package qm9

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// DefaultSampleBatch is the default cap on molecules per CNF solve.
const DefaultSampleBatch = 100

// SampleOptions configure Sample.
type SampleOptions struct {
	N     int    // molecules to draw
	Seed  uint64 // seeds the sizes, the prior draws and nothing else
	Batch int    // molecules per CNF solve at most; default DefaultSampleBatch; 1 = one at a time
	// Buckets, if > 0, allows at most that many distinct padded molecule sizes: the drawn sizes
	// are cut into ≤ Buckets contiguous ranges (chosen to minimise the padded pair work
	// Σ N_pad²) and the molecules of a range share solves, padded with masked atoms to the
	// range's largest size. Fewer sizes mean fewer compiled graphs (XLA compiles one per
	// (molecules, atoms) shape) at the cost of padded compute. 0 (default): one group per size,
	// no padding.
	Buckets int
	// Sizes, when non-nil, fixes the molecule sizes instead of drawing them from p(N).
	Sizes []int
	// Workers is how many CNF solves run at once (default DefaultSampleWorkers; 1 = one after
	// another). Results, Emit and Progress still come in batch order and do not depend on it.
	Workers int
	// Progress, if set, is called after each batch with the molecules done so far.
	Progress func(done, total int, last BatchInfo)
	// Emit, if set, receives each batch's molecules and decoded charges as soon as they are
	// decoded (in batch order; IDs are draw indices), and SampleResult.Molecules/Charges stay
	// nil: memory is then bounded by the batch, not by N. An error stops sampling.
	Emit func(mols []molecule.Molecule, charges [][]int) error
}

// BatchInfo describes one sampling batch (one CNF solve, unless Retried).
type BatchInfo struct {
	// Atoms is the padded size of the solve (its graph shape is Molecules × Atoms); MinAtoms is
	// its smallest molecule (= Atoms without padding).
	Atoms, MinAtoms, Molecules, NFE int
	Wall                            time.Duration
	Retried                         bool // the batch solve failed and its molecules were solved one by one
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
	// NFE sums the dynamics evaluations of all solves; Solves counts them (a retried batch
	// counts its failed solve and its one-molecule solves).
	NFE, Solves int
	// MoleculeNFE is Σ over solves of molecules × NFE: the dynamics evaluations per molecule
	// summed over molecules, the count that compute scales with.
	MoleculeNFE int
	Wall        time.Duration
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
// charge channel. Positions are in Å, centred.
//
// Molecule i's prior draw z_i depends only on (Seed, i, N_i), never on how molecules are
// grouped, so one-at-a-time, batched and bucketed sampling start from the same z and differ only
// through the shared step-size control of a batched solve. Molecules of the same size share a
// solve (up to o.Batch per solve; o.Buckets merges neighbouring sizes with padding); a batch
// whose solve fails is solved again one molecule at a time from the same z. Up to o.Workers
// solves run at once; the result does not depend on how many.
func (m *Model) Sample(ctx context.Context, o SampleOptions) (*SampleResult, error) {
	start := time.Now()
	if o.Batch <= 0 {
		o.Batch = DefaultSampleBatch
	}
	if o.Workers <= 0 {
		o.Workers = DefaultSampleWorkers
	}
	sizes := o.Sizes
	if sizes == nil {
		if o.N <= 0 {
			return nil, fmt.Errorf("qm9: number of samples %d must be positive", o.N)
		}
		sizes = m.cfg.Sizes.NewSampler(o.Seed).SampleN(o.N)
	}
	for i, n := range sizes {
		if n < 1 {
			return nil, fmt.Errorf("qm9: sample %d: size %d must be positive", i, n)
		}
	}
	total := len(sizes)
	res := &SampleResult{}
	if o.Emit == nil {
		res.Molecules, res.Charges = make([]molecule.Molecule, total), make([][]int, total)
	}
	plan := PlanSampleBatches(sizes, o.Batch, o.Buckets)
	solved := m.solveAll(ctx, plan, sizes, o.Seed, o.Workers)
	defer solved.stop()
	done := 0
	for bi, g := range plan {
		var sb solvedBatch
		select {
		case sb = <-solved.out[bi]:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		info := sb.info
		res.Solves += sb.solves
		res.MoleculeNFE += sb.moleculeNFE
		var emitM []molecule.Molecule
		var emitC [][]int
		for k, i := range g.Indices {
			n, d := sizes[i], sb.out[k]
			mol := molecule.Molecule{ID: int64(i), Split: "sample", Z: make([]int, n), Positions: make([][3]float64, n), Omega1: math.NaN()}
			for p := range mol.Props {
				mol.Props[p] = math.NaN()
			}
			if d.failed {
				res.Failed++
			}
			for a := range n {
				mol.Z[a] = m.cfg.Elements[d.types[a]]
				copy(mol.Positions[a][:], d.pos[a*PosDims:(a+1)*PosDims])
				if d.charges[a] == mol.Z[a] {
					res.ChargeMatches++
				}
			}
			res.Atoms += n
			if o.Emit != nil {
				emitM, emitC = append(emitM, mol), append(emitC, d.charges)
			} else {
				res.Molecules[i], res.Charges[i] = mol, d.charges
			}
		}
		if o.Emit != nil {
			if err := o.Emit(emitM, emitC); err != nil {
				return nil, err
			}
		}
		res.NFE += info.NFE
		done += len(g.Indices)
		if o.Progress != nil {
			o.Progress(done, total, info)
		}
	}
	res.Wall = time.Since(start)
	return res, nil
}

// DefaultSampleWorkers is the default number of CNF solves Sample runs at once. Solves of
// different batches are independent; two at a time keep both cores of a small machine busy when
// one solve's graphs are too small to (measured in README "Performance", QM9 sampling).
const DefaultSampleWorkers = 2

// solvedBatch is the outcome of one planned batch.
type solvedBatch struct {
	out                 []decoded
	info                BatchInfo
	solves, moleculeNFE int
}

// batchSolves hands out the batches of a plan as they are solved: out[i] receives batch i's
// outcome exactly once; stop cancels the solves not yet started and waits for the running ones.
type batchSolves struct {
	out  []chan solvedBatch
	stop func()
}

// solveAll solves the plan's batches with up to workers concurrent solves, taking batches in
// plan order (largest first). Each molecule's prior draw depends only on (seed, index, size), so
// the results do not depend on workers.
func (m *Model) solveAll(ctx context.Context, plan []SampleBatch, sizes []int, seed uint64, workers int) batchSolves {
	ctx, cancel := context.WithCancel(ctx)
	out := make([]chan solvedBatch, len(plan))
	for i := range out {
		out[i] = make(chan solvedBatch, 1)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	// The first batch is solved alone: the first graph built by each GoMLX Exec switches its
	// context to reuse mode unsynchronised, so later solves may only build graphs (of other
	// shapes) concurrently once every Exec has built one.
	first := make(chan struct{})
	for w := range min(workers, len(plan)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w > 0 {
				select {
				case <-first:
				case <-ctx.Done():
					return
				}
			}
			for {
				i := int(next.Add(1) - 1)
				if i >= len(plan) || ctx.Err() != nil {
					return
				}
				out[i] <- m.solvePlanned(plan[i], sizes, seed)
				if i == 0 {
					close(first)
				}
			}
		}()
	}
	return batchSolves{out: out, stop: func() { cancel(); wg.Wait() }}
}

// solvePlanned solves one planned batch; a batch whose solve fails is solved again one molecule
// at a time from the same z (a single diverging molecule can stall a shared solve).
func (m *Model) solvePlanned(g SampleBatch, sizes []int, seed uint64) solvedBatch {
	bs := time.Now()
	sb := solvedBatch{info: BatchInfo{Atoms: g.Atoms, MinAtoms: g.Atoms, Molecules: len(g.Indices)}}
	zs := make([][]float64, len(g.Indices))
	for k, i := range g.Indices {
		zs[k] = moleculePrior(seed, i, sizes[i], m.cfg.Channels())
		sb.info.MinAtoms = min(sb.info.MinAtoms, sizes[i])
	}
	out, nfe, err := m.solveBatch(zs, g.Atoms)
	sb.info.NFE += nfe
	sb.solves++
	sb.moleculeNFE += nfe * len(g.Indices)
	if err != nil {
		sb.info.Retried = true
		out = make([]decoded, len(g.Indices))
		for k, i := range g.Indices {
			one, nfe, err := m.solveBatch(zs[k:k+1], sizes[i])
			sb.info.NFE += nfe
			sb.solves++
			sb.moleculeNFE += nfe
			if err != nil {
				out[k] = failedMolecule(sizes[i])
				continue
			}
			out[k] = one[0]
		}
	}
	sb.out = out
	sb.info.Wall = time.Since(bs)
	return sb
}

// SampleBatch is one planned CNF solve: the draw indices of its molecules and the padded size.
type SampleBatch struct {
	Atoms   int
	Indices []int
}

// PlanSampleBatches groups draw indices for Sample: by size (or, with buckets > 0, by at most
// that many contiguous size ranges, see SampleOptions.Buckets), largest first (slowest first,
// so progress estimates are pessimistic rather than optimistic), in draw order within a group,
// cut into solves of at most batch molecules.
func PlanSampleBatches(sizes []int, batch, buckets int) []SampleBatch {
	if batch <= 0 {
		batch = DefaultSampleBatch
	}
	count := map[int]int{}
	for _, n := range sizes {
		count[n]++
	}
	distinct := make([]int, 0, len(count))
	for n := range count {
		distinct = append(distinct, n)
	}
	slices.Sort(distinct)
	// padTo[n] is the padded size of molecules of n atoms.
	padTo := map[int]int{}
	bounds := bucketBounds(distinct, count, buckets)
	for _, n := range distinct {
		k, _ := slices.BinarySearch(bounds, n) // first bound ≥ n
		padTo[n] = bounds[k]
	}
	members := map[int][]int{}
	for i, n := range sizes {
		members[padTo[n]] = append(members[padTo[n]], i)
	}
	order := make([]int, 0, len(members))
	for a := range members {
		order = append(order, a)
	}
	slices.Sort(order)
	slices.Reverse(order)
	var out []SampleBatch
	for _, a := range order {
		idx := members[a]
		for s := 0; s < len(idx); s += batch {
			out = append(out, SampleBatch{Atoms: a, Indices: idx[s:min(s+batch, len(idx))]})
		}
	}
	return out
}

// bucketBounds returns the upper bounds (ascending) of at most buckets contiguous ranges of the
// sorted distinct sizes minimising Σ_molecules bound² (dense pair work per dynamics evaluation);
// buckets ≤ 0 or ≥ len(distinct) gives every size its own range.
func bucketBounds(distinct []int, count map[int]int, buckets int) []int {
	s := len(distinct)
	if buckets <= 0 || buckets >= s {
		return distinct
	}
	// cost[k][j]: best cost of the first j sizes in k ranges; cut[k][j]: start of the last range.
	inf := math.MaxFloat64
	cost := make([][]float64, buckets+1)
	cut := make([][]int, buckets+1)
	for k := range cost {
		cost[k] = make([]float64, s+1)
		cut[k] = make([]int, s+1)
		for j := range cost[k] {
			cost[k][j] = inf
		}
	}
	cost[0][0] = 0
	for k := 1; k <= buckets; k++ {
		for j := 1; j <= s; j++ {
			hi := float64(distinct[j-1])
			mols := 0
			for i := j; i >= 1; i-- { // last range = distinct[i-1 .. j-1]
				mols += count[distinct[i-1]]
				if cost[k-1][i-1] == inf {
					continue
				}
				if c := cost[k-1][i-1] + float64(mols)*hi*hi; c < cost[k][j] {
					cost[k][j], cut[k][j] = c, i-1
				}
			}
		}
	}
	var bounds []int
	for k, j := buckets, s; j > 0; k-- {
		bounds = append(bounds, distinct[j-1])
		j = cut[k][j]
	}
	slices.Reverse(bounds)
	return bounds
}

// priorStream separates the prior draws from the size draws (prior.SizeSampler uses stream 0).
const priorStream = 0x7361_6d70_6c65_7a32 // "samplez2"

// moleculePrior draws molecule i's z (n × ch, row-major): standard normal, with the mean over
// atoms removed from the position channels (the CoG-free Gaussian on positions), from a stream
// of its own, so that z does not depend on how molecules are batched.
func moleculePrior(seed uint64, i, n, ch int) []float64 {
	rng := rand.New(rand.NewPCG(seed, splitmix64(priorStream^uint64(i))))
	z := make([]float64, n*ch)
	for k := range z {
		z[k] = rng.NormFloat64()
	}
	prior.CenterPositions(z, n, ch, PosDims)
	return z
}

// splitmix64 is the SplitMix64 finaliser: distinct molecule indices give unrelated PCG streams.
func splitmix64(x uint64) uint64 {
	x += 0x9e37_79b9_7f4a_7c15
	x = (x ^ (x >> 30)) * 0xbf58_476d_1ce4_e5b9
	x = (x ^ (x >> 27)) * 0x94d0_49bb_1331_11eb
	return x ^ (x >> 31)
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

// solveBatch integrates the prior draws zs (molecule k has len(zs[k])/C ≤ atoms atoms, C the
// model's channels) in one solve of shape (len(zs), atoms, C), padding with masked atoms, and
// decodes them.
func (m *Model) solveBatch(zs [][]float64, atoms int) ([]decoded, int, error) {
	b := len(zs)
	ch := m.cfg.Channels()
	z := make([]float64, b*atoms*ch)
	ones := make([]float64, b*atoms)
	for k, zk := range zs {
		copy(z[k*atoms*ch:], zk)
		for a := range len(zk) / ch {
			ones[k*atoms+a] = 1
		}
	}
	mask, err := prior.FromFloat64(m.cfg.DType, ones, b, atoms)
	if err != nil {
		return nil, 0, err
	}
	defer freeAll([]*tensors.Tensor{mask})
	zt, err := prior.FromFloat64(m.cfg.DType, z, b, atoms, ch)
	if err != nil {
		return nil, 0, err
	}
	y, st, err := m.flow.Decode(zt, mask)
	if y != zt {
		freeAll([]*tensors.Tensor{zt})
	}
	if err != nil {
		return nil, st.Forward.NFE, fmt.Errorf("qm9: sampling %d molecules of ≤ %d atoms: %w", b, atoms, err)
	}
	pos, types, charges, finite, err := m.Decode(y, mask)
	freeAll([]*tensors.Tensor{y})
	if err != nil {
		return nil, st.Forward.NFE, err
	}
	out := make([]decoded, b)
	for k, zk := range zs {
		n, o := len(zk)/ch, k*atoms
		d := decoded{pos: pos[o*PosDims : (o+n)*PosDims], types: types[o : o+n], charges: charges[o : o+n]}
		for _, ok := range finite[o : o+n] {
			if !ok {
				d = failedMolecule(n) // en_flows: "NaN occured, setting z to zero" → all H at the origin
				break
			}
		}
		out[k] = d
	}
	return out, st.Forward.NFE, nil
}
