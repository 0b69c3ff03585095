package optim

import (
	"math"
	"testing"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
)

// expectedStep is the parameter state after one step, and the pre-clipping gradient norm that
// torch.nn.utils.clip_grad_norm_ returned (0 where no clipping was done).
type expectedStep struct {
	A, B []float64
	Norm float64
}

// torchExpected was produced once with PyTorch 1.13 (Debian python3-torch) in float64 by
// testdata/gen_adamw_expected.py: torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8,
// foreach=False) over two parameters, a = [1, -2, 0.5] and b = [[0.3, -0.7], [1.5, 2]], fed the
// gradient sequence of testGrads. Clipping cases call torch.nn.utils.clip_grad_norm_ before each
// step; the adaptive case emulates en_flows' utils.gradient_clipping Queue.
var torchExpected = map[string][]expectedStep{
	"amsgrad_wd": {
		{A: []float64{0.98900000001999999, -1.98800000001, 0.48950000000499999}, B: []float64{0.28970000000999996, -0.68930000001999991, 1.4885000000399999, 2.007999999995}, Norm: 0},
		{A: []float64{0.98123191357645412, -1.9792329135568794, 0.48223141354709209}, B: []float64{0.28264237560921718, -0.68184277562877604, 1.4802435756678938, 2.0127599244005623}, Norm: 0},
		{A: []float64{0.97493639134788146, -1.9719393903191262, 0.47643489180474874}, B: []float64{0.27707323130093747, -0.67587443092962873, 1.4734768301870109, 2.0160336664134082}, Norm: 0},
		{A: []float64{0.96889081504780283, -1.9648968110100138, 0.47088781698911936}, B: []float64{0.27198455546308814, -0.67038695390174563, 1.4671917507790604, 2.0188292353583406}, Norm: 0},
		{A: []float64{0.96292546395540823, -1.9579354539106741, 0.46542046887830912}, B: []float64{0.2672243080321331, -0.66522830408232925, 1.4612362961827212, 2.0212986690034631}, Norm: 0},
	},
	"amsgrad_enf": {
		{A: []float64{0.99950000000099948, -1.999500000000499, 0.49950000000024974}, B: []float64{0.29950000000049981, -0.69950000000099966, 1.4995000000019991, 2.0004999999997488}, Norm: 0},
		{A: []float64{0.99916104567882258, -1.9991610456778424, 0.49916104567735431}, B: []float64{0.29916160378046103, -0.6991616037814391, 1.499161603783395, 2.0008383962200251}, Norm: 0},
		{A: []float64{0.99889533116307216, -1.9988953311616315, 0.49889533116091422}, B: []float64{0.29889727868382732, -0.69889727868526286, 1.4988972786881334, 2.0011027213168862}, Norm: 0},
		{A: []float64{0.99864179916763507, -1.9986417991656908, 0.49864179916472273}, B: []float64{0.29865669855349974, -0.6986566985554149, 1.4986566985592442, 2.0013433014474522}, Norm: 0},
		{A: []float64{0.99839197615376718, -1.9983919761512732, 0.49839197615003139}, B: []float64{0.298432285409725, -0.69843228541213886, 1.4984322854169654, 2.001567714591475}, Norm: 0},
	},
	"adam_nomax": {
		{A: []float64{0.98900000001999999, -1.98800000001, 0.48950000000499999}, B: []float64{0.28970000000999996, -0.68930000001999991, 1.4885000000399999, 2.007999999995}, Norm: 0},
		{A: []float64{0.98122893220235574, -1.9792299321827724, 0.48222843217298106}, B: []float64{0.28263929494747625, -0.68183969496704389, 1.4802404950061792, 2.0127630050623075}, Norm: 0},
		{A: []float64{0.97492879914240538, -1.9719317981136255, 0.47642729959923608}, B: []float64{0.27706531564592862, -0.67586651527464536, 1.4734689145320787, 2.0160415820684294}, Norm: 0},
		{A: []float64{0.96888323043453228, -1.9648892263967184, 0.47088023237581222}, B: []float64{0.27197664772373431, -0.67037904616241728, 1.467183843039783, 2.018837143097707}, Norm: 0},
		{A: []float64{0.96291788692675095, -1.9579278768819919, 0.46541289184961532}, B: []float64{0.26721640820051862, -0.66522040425074025, 1.4612283963511832, 2.0213065688350902}, Norm: 0},
	},
	"clip_fixed": {
		{A: []float64{0.98900000064999993, -1.988000000325, 0.4895000001625}, B: []float64{0.28970000032499998, -0.68930000064999986, 1.4885000012999998, 2.0079999998374998}, Norm: 32.5},
		{A: []float64{0.97919572025241675, -1.9771967195461482, 0.48019521919301372}, B: []float64{0.28081193692925166, -0.68001233763161351, 1.4784131390363373, 2.0145903634219291}, Norm: 0.3338717006576029},
		{A: []float64{0.96961670228007757, -1.9666197001464714, 0.47111520107966803}, B: []float64{0.27240930655526729, -0.67121050727781051, 1.4688129087228967, 2.0206975917060039}, Norm: 0.34442887509615105},
		{A: []float64{0.9595800962813047, -1.955586090790155, 0.4615770960425799}, B: []float64{0.26334561753816582, -0.66174801748821355, 1.4585528173883087, 2.0274681740389577}, Norm: 3.565218261200848},
		{A: []float64{0.9492168604064305, -1.9442268485872674, 0.45171186266768748}, B: []float64{0.25396516487962606, -0.65196916286903983, 1.4479771588478669, 2.0345578131255784}, Norm: 3.6999999999999997},
	},
	"clip_adaptive": {
		{A: []float64{0.98900000043333336, -1.9880000002166667, 0.48950000010833333}, B: []float64{0.28970000021666664, -0.68930000043333328, 1.4885000008666665, 2.0079999998916667}, Norm: 32.5},
		{A: []float64{0.97976713630212553, -1.9777681358399004, 0.48076663560878785}, B: []float64{0.28134648660305306, -0.68054688706157085, 1.4789476879786061, 2.0140558136262059}, Norm: 0.3338717006576029},
		{A: []float64{0.971041954666642, -1.9680449529306481, 0.47254045406265111}, B: []float64{0.27374309738086422, -0.67254429770340041, 1.4701466983484723, 2.019363800680404}, Norm: 0.34442887509615105},
		{A: []float64{0.96179925625296336, -1.9578052513417625, 0.46379625688416204}, B: []float64{0.26513178232986573, -0.66353418168760336, 1.4603389804030782, 2.0256820089511032}, Norm: 3.565218261200848},
		{A: []float64{0.95223831868396769, -1.9472483076513096, 0.45473332212498263}, B: []float64{0.25600989336748553, -0.65401389052676795, 1.4500218848453323, 2.0325130842226535}, Norm: 3.6999999999999997},
	},
}

// testGrads reproduces grads_seq() of testdata/gen_adamw_expected.py: a large first gradient and
// small ones after, so the AMSGrad max of the second moment differs from the plain second moment.
func testGrads() (ga [][]float64, gb [][]float64) {
	for k := range 5 {
		s := 1.0
		switch {
		case k == 0:
			s = 10
		case k < 3:
			s = 0.1
		}
		fa := s * (1 + 0.1*float64(k))
		fb := s * (1 - 0.05*float64(k))
		ga = append(ga, []float64{0.5 * fa, -1 * fa, 2 * fa})
		gb = append(gb, []float64{1 * fb, -0.5 * fb, 0.25 * fb, -2 * fb})
	}
	return
}

func newTestBackend(t *testing.T) backends.Backend {
	t.Helper()
	b, err := backend.New("go")
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	t.Cleanup(b.Finalize)
	return b
}

func newTestVars(t *testing.T, ctx *context.Context) (a, b *context.Variable) {
	t.Helper()
	a = ctx.In("layer").VariableWithValue("a", []float64{1, -2, 0.5})
	b = ctx.In("other").VariableWithValue("b", [][]float64{{0.3, -0.7}, {1.5, 2}})
	return a, b
}

func TestAdamWMatchesTorch(t *testing.T) {
	be := newTestBackend(t)
	cases := []struct {
		name     string
		config   func() *Config
		viaLoss  bool // use optimizers.Interface.UpdateGraph on a loss whose gradient is the given one.
		wantNorm bool
	}{
		{name: "amsgrad_wd", config: func() *Config { return AdamW().LearningRate(0.01).WeightDecay(0.1) }},
		{name: "amsgrad_wd", config: func() *Config { return AdamW().LearningRate(0.01).WeightDecay(0.1) }, viaLoss: true},
		{name: "amsgrad_enf", config: func() *Config { return AdamW().LearningRate(5e-4).WeightDecay(1e-12) }},
		{name: "adam_nomax", config: func() *Config { return AdamW().LearningRate(0.01).WeightDecay(0.1).AMSGrad(false) }},
		{name: "clip_fixed", config: func() *Config { return AdamW().LearningRate(0.01).WeightDecay(0.1).ClipGradNorm(1) }, wantNorm: true},
		{name: "clip_adaptive", config: func() *Config { return AdamW().LearningRate(0.01).WeightDecay(0.1).ClipAdaptive(3, 1) }, wantNorm: true},
	}
	for _, tc := range cases {
		name := tc.name
		if tc.viaLoss {
			name += "/UpdateGraph"
		}
		t.Run(name, func(t *testing.T) {
			want := torchExpected[tc.name]
			opt, err := tc.config().Done()
			if err != nil {
				t.Fatal(err)
			}
			ctx := seededContext()
			va, vb := newTestVars(t, ctx)
			ga, gb := testGrads()
			var step func(k int) float64
			if tc.viaLoss {
				exec, err := context.NewExec(be, ctx, func(ctx *context.Context, ga, gb *Node) *Node {
					g := ga.Graph()
					loss := Add(ReduceAllSum(Mul(ga, va.ValueGraph(g))), ReduceAllSum(Mul(gb, vb.ValueGraph(g))))
					opt.UpdateGraph(ctx, g, loss)
					return loss
				})
				if err != nil {
					t.Fatal(err)
				}
				defer exec.Finalize()
				step = func(k int) float64 {
					gbT := tensors.FromFlatDataAndDimensions(gb[k], 2, 2)
					if _, err := exec.Exec(ga[k], gbT); err != nil {
						t.Fatalf("step %d: %v", k, err)
					}
					return 0
				}
			} else {
				st, err := NewStepper(be, ctx, opt, []*context.Variable{va, vb})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				step = func(k int) float64 {
					res, err := st.Step([]*tensors.Tensor{tensors.FromValue(ga[k]), tensors.FromFlatDataAndDimensions(gb[k], 2, 2)})
					if err != nil {
						t.Fatalf("step %d: %v", k, err)
					}
					return res.GradNorm
				}
			}
			for k, w := range want {
				norm := step(k)
				gotA := tensors.MustCopyFlatData[float64](va.MustValue())
				gotB := tensors.MustCopyFlatData[float64](vb.MustValue())
				assertClose(t, k, "a", gotA, w.A, 1e-12)
				assertClose(t, k, "b", gotB, w.B, 1e-12)
				if tc.wantNorm {
					assertClose(t, k, "grad norm", []float64{norm}, []float64{w.Norm}, 1e-12)
				}
			}
			if got := optimizers.GetGlobalStep(ctx); got != int64(len(want)) {
				t.Errorf("global step = %d, want %d", got, len(want))
			}
			if lr, ok := LearningRate(ctx); !ok || lr <= 0 {
				t.Errorf("LearningRate = %v, %v", lr, ok)
			}
		})
	}
}

// TestAMSGradUsesMax checks directly that the max of the raw second moment is kept: after a large
// gradient followed by small ones (steps 2 and 3), the AMSGrad step is smaller than plain Adam's.
func TestAMSGradUsesMax(t *testing.T) {
	ams, plain := torchExpected["amsgrad_wd"], torchExpected["adam_nomax"]
	for k := 1; k <= 2; k++ {
		stepAms := ams[k-1].A[2] - ams[k].A[2]
		stepPlain := plain[k-1].A[2] - plain[k].A[2]
		if !(math.Abs(stepAms) < math.Abs(stepPlain)) {
			t.Errorf("step %d: |AMSGrad step| %g should be < |Adam step| %g", k, stepAms, stepPlain)
		}
	}
	// And the state variable holds max(v̂, v): after step 2 it still equals the step-1 value.
	be := newTestBackend(t)
	opt, err := AdamW().LearningRate(0.01).Done()
	if err != nil {
		t.Fatal(err)
	}
	ctx := seededContext()
	va, vb := newTestVars(t, ctx)
	st, err := NewStepper(be, ctx, opt, []*context.Variable{va, vb})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ga, gb := testGrads()
	var vmax1 []float64
	for k := range 2 {
		if _, err := st.Step([]*tensors.Tensor{tensors.FromValue(ga[k]), tensors.FromFlatDataAndDimensions(gb[k], 2, 2)}); err != nil {
			t.Fatal(err)
		}
		vmax := ctx.GetVariableByScopeAndName("/AdamW/layer", "a_max_2nd_moment")
		v := ctx.GetVariableByScopeAndName("/AdamW/layer", "a_2nd_moment")
		if vmax == nil || v == nil {
			t.Fatalf("moment variables not found in context")
		}
		gotMax := tensors.MustCopyFlatData[float64](vmax.MustValue())
		gotV := tensors.MustCopyFlatData[float64](v.MustValue())
		if k == 0 {
			vmax1 = gotMax
			assertClose(t, k, "vmax==v", gotMax, gotV, 0)
			continue
		}
		assertClose(t, k, "vmax kept", gotMax, vmax1, 0)
		for i := range gotV {
			if !(gotV[i] < gotMax[i]) {
				t.Errorf("v[%d]=%g should have decayed below vmax %g", i, gotV[i], gotMax[i])
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *Config
	}{
		{"beta1", AdamW().Betas(1, 0.999)},
		{"beta2", AdamW().Betas(0.9, -0.1)},
		{"eps", AdamW().Epsilon(-1)},
		{"wd", AdamW().WeightDecay(-1)},
		{"queue", AdamW().ClipAdaptive(0, 1)},
		{"dtype", AdamW().DType(dtypes.Int32)},
		{"scope", AdamW().Scope("")},
	} {
		if _, err := tc.cfg.Done(); err == nil {
			t.Errorf("%s: Done() should fail", tc.name)
		}
	}
}

func TestFromContext(t *testing.T) {
	ctx := seededContext()
	ctx.SetParams(map[string]any{
		ParamBeta1: 0.8, ParamBeta2: 0.99, ParamEpsilon: 1e-6, ParamWeightDecay: 1e-12,
		ParamAMSGrad: false, ParamClipGradNorm: 2.0, ParamClipAdaptive: true, ParamClipQueueLen: 7, ParamClipQueueInit: 1e30,
	})
	c := AdamW().FromContext(ctx)
	if c.beta1 != 0.8 || c.beta2 != 0.99 || c.epsilon != 1e-6 || c.weightDecay != 1e-12 || c.amsGrad ||
		c.clipNorm != 2 || !c.clipAdaptive || c.clipQueueLen != 7 || c.clipQueueInit != 1e30 {
		t.Errorf("FromContext: %+v", *c)
	}
}

func assertClose(t *testing.T, step int, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("step %d %s: len %d, want %d", step, what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > tol*math.Max(1, math.Abs(want[i])) {
			t.Errorf("step %d %s[%d] = %.17g, want %.17g (diff %.3g)", step, what, i, got[i], want[i], d)
		}
	}
}

// TestAdaptiveClipHugeSeedFloat32 is a regression test: en_flows seeds the QM9 Positional
// clipping queue with 1e30; with float32 parameters the queue statistics (squared deviations of
// ~1e60) overflowed and 0·Inf turned every parameter into NaN after the second step. The
// statistics are now computed in float64; with a 1e30 seed nothing is clipped.
func TestAdaptiveClipHugeSeedFloat32(t *testing.T) {
	be := newTestBackend(t)
	for _, clip := range []bool{true, false} {
		ctx := seededContext()
		v := ctx.In("layer").VariableWithValue("w", []float32{1, -2, 0.5})
		cfg := AdamW().LearningRate(0.01).WeightDecay(1e-12)
		if clip {
			cfg = cfg.ClipAdaptive(50, 1e30)
		}
		opt, err := cfg.Done()
		if err != nil {
			t.Fatal(err)
		}
		st, err := NewStepper(be, ctx, opt, []*context.Variable{v})
		if err != nil {
			t.Fatal(err)
		}
		for k := range 5 {
			g := []float32{0.3 * float32(k+1), -1, 2}
			res, err := st.Step([]*tensors.Tensor{tensors.FromValue(g)})
			if err != nil {
				t.Fatalf("clip=%v step %d: %v", clip, k, err)
			}
			if math.IsNaN(res.GradNorm) || math.IsInf(res.GradNorm, 0) {
				t.Fatalf("clip=%v step %d: grad norm %v", clip, k, res.GradNorm)
			}
		}
		got := tensors.MustCopyFlatData[float32](v.MustValue())
		for i, x := range got {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("clip=%v: parameter %d = %v after 5 steps", clip, i, x)
			}
		}
		st.Close()
		if clip {
			t.Logf("clipped run: %v", got)
		} else {
			t.Logf("plain run:   %v", got)
		}
	}
}
