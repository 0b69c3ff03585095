package qm9

// mt19937 is the 32-bit Mersenne Twister used by numpy's legacy RandomState.
type mt19937 struct {
	mt  [624]uint32
	pos int
}

// newMT19937 seeds the generator the way np.random.seed(int) does (init_genrand).
func newMT19937(seed uint32) *mt19937 {
	g := &mt19937{pos: 624}
	g.mt[0] = seed
	for i := 1; i < 624; i++ {
		prev := g.mt[i-1]
		g.mt[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	return g
}

// regenerate refills the state block of 624 words.
func (g *mt19937) regenerate() {
	const (
		n, m      = 624, 397
		matrixA   = 0x9908b0df
		upperMask = 0x80000000
		lowerMask = 0x7fffffff
	)
	for i := range n {
		y := (g.mt[i] & upperMask) | (g.mt[(i+1)%n] & lowerMask)
		v := g.mt[(i+m)%n] ^ (y >> 1)
		if y&1 != 0 {
			v ^= matrixA
		}
		g.mt[i] = v
	}
	g.pos = 0
}

// uint32 returns the next tempered output.
func (g *mt19937) uint32() uint32 {
	if g.pos >= 624 {
		g.regenerate()
	}
	y := g.mt[g.pos]
	g.pos++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// bounded returns a uniform integer in [0, max] by masked rejection sampling, as numpy's
// legacy rk_interval does for max < 2³².
func (g *mt19937) bounded(max uint32) uint32 {
	if max == 0 {
		return 0
	}
	mask := max
	mask |= mask >> 1
	mask |= mask >> 2
	mask |= mask >> 4
	mask |= mask >> 8
	mask |= mask >> 16
	for {
		if v := g.uint32() & mask; v <= max {
			return v
		}
	}
}

// Permutation returns what numpy's legacy `np.random.seed(seed); np.random.permutation(n)`
// returns: 0..n-1 shuffled by Fisher–Yates from the end with MT19937 draws.
// n must be below 2³²; larger or negative n gives nil.
func Permutation(n int, seed uint32) []int {
	if n < 0 || uint64(n) > 1<<32 {
		return nil
	}
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	g := newMT19937(seed)
	for i := n - 1; i >= 1; i-- {
		j := int(g.bounded(uint32(i)))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
