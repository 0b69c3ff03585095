package dynamics

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/gomlx_models/fastvjp"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Benchmarks of the E-NF particle dynamics (float32, PyTorch-default-style initialisation) on
// the backend selected by $GOMLX_BACKEND (default: backend.DefaultSimpleGo). PyTorch reference
// on the same kind of 2-core machine (docs/reference-timings.md): DW4 forward B=100 1.4 ms,
// forward + Hutchinson VJP 5.6 ms; LJ13 forward 23 ms, forward + VJP 79 ms.
//
//	go test -run '^$' -bench . -benchtime 10x ./gomlx_models/dynamics/
//
// "vjp" = f(t,z) and the Hutchinson VJP εᵀ·∂f/∂z (what the CNF evaluates per solver stage);
// the "_stockvjp" variants use GoMLX's stock DotGeneral VJP instead of package fastvjp;
// "train" additionally differentiates Σ εᵀ∂f/∂z + ½Σf² w.r.t. all parameters (second order).
//
// Measured 2026-11-23 on the idle 2-core AMD EPYC, GoMLX v0.27.3, SimpleGo "go:ops_sequential"
// (GOMLX_BACKEND=go:ops_sequential), ms per op, B = 100, float32:
// DW4 forward 14.9, vjp 28.8 (stock VJP 114), train 82.9 (stock VJP 529). The side-by-side
// table against XLA and PyTorch is in README "Performance" (`enflow bench`).
func BenchmarkParticle(b *testing.B) {
	systems := []struct {
		name string
		n, d int
	}{{"DW4", 4, 2}, {"LJ13", 13, 3}}
	const batch = 100
	for _, sys := range systems {
		fn := Particle(egnn.ParticleConfig())
		rng := rand.New(rand.NewPCG(1, 2))
		data := make([]float32, batch*sys.n*sys.d)
		epsData := make([]float32, len(data))
		for i := range data {
			data[i] = float32(rng.NormFloat64())
			epsData[i] = float32(2*rng.IntN(2) - 1)
		}
		z := tensors.FromFlatDataAndDimensions(data, batch, sys.n, sys.d)
		eps := tensors.FromFlatDataAndDimensions(epsData, batch, sys.n, sys.d)
		ctx := seededContext()
		for _, mode := range []string{"forward", "vjp", "vjp_stockvjp", "train", "train_stockvjp"} {
			b.Run(fmt.Sprintf("%s/B%d/%s", sys.name, batch, mode), func(b *testing.B) {
				stock := mode == "vjp_stockvjp" || mode == "train_stockvjp"
				if stock {
					fastvjp.Restore()
					defer fastvjp.Register()
				}
				exec, err := context.NewExec(getBackend(b), ctx, func(ctx *context.Context, tt, z, eps *Node) []*Node {
					switch mode {
					case "forward":
						return []*Node{fn(ctx, tt, z, nil)}
					case "vjp", "vjp_stockvjp":
						f := fn(ctx, tt, z, nil)
						return []*Node{f, Gradient(ReduceAllSum(Mul(f, eps)), z)[0]}
					default:
						loss := hutchinsonLoss(ctx, fn, tt, z, eps)
						var params []*Node
						for v := range ctx.IterVariables() {
							if v.Trainable && v.Shape().DType.IsFloat() {
								params = append(params, v.ValueGraph(loss.Graph()))
							}
						}
						return append([]*Node{loss}, Gradient(loss, params...)...)
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				defer exec.Finalize()
				tt := float32(0.5)
				if _, err := exec.Exec(tt, z, eps); err != nil { // compile + initialise variables
					b.Fatal(err)
				}
				b.ResetTimer()
				cpu0 := cpuTime()
				for b.Loop() {
					outs, err := exec.Exec(tt, z, eps)
					if err != nil {
						b.Fatal(err)
					}
					for _, o := range outs {
						o.FinalizeAll()
					}
				}
				// CPU time (user+sys, all threads) per op: less sensitive than wall time to other
				// processes sharing the machine.
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
