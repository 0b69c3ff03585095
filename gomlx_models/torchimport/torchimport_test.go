package torchimport

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"hash/crc32"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/internal/shared"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

const pretrained = "data/pretrained/en_flows_qm9"

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// The published en_flows QM9 checkpoint (REFERENCE §4.1–4.3).
func TestPublishedCheckpoint(t *testing.T) {
	flowPath := shared.Require(t, pretrained, "flow.npy")
	deqPath := shared.Require(t, pretrained, "dequantizer.npy")

	flow, err := LoadStateDict(flowPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(flow.Keys) != 88 || flow.NumValues() != 176479 {
		t.Errorf("flow: %d tensors, %d values; want 88, 176479", len(flow.Keys), flow.NumValues())
	}
	deq, err := LoadStateDict(deqPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(deq.Keys) != 48 || deq.NumValues() != 117708 {
		t.Errorf("dequantizer: %d tensors, %d values; want 48, 117708", len(deq.Keys), deq.NumValues())
	}
	if deq.Keys[0] != "net_fn.egnn.embedding.weight" {
		t.Errorf("first dequantizer key %q", deq.Keys[0])
	}

	const eg = "transformations.1.odefunc.dynamics.egnn."
	cases := []struct {
		sd    *StateDict
		key   string
		shape []int
		dtype DType
		want  []float64 // leading values (tolerance 1e-4), nil = not checked
	}{
		{flow, "transformations.0.x_log_s", []int{1, 1}, Float32, []float64{0.8204}},
		{flow, "transformations.0.h_t", []int{1, 6}, Float32, []float64{-1.4038, -1.9392, -1.5855, -1.5380, -2.0194, 4.2484}},
		{flow, "transformations.0.h_log_s", []int{1, 6}, Float32, []float64{0.9583, 0.3901, 0.5649, 0.5721, 0.5100, 0.9580}},
		{flow, "transformations.0.initialized", []int{}, Int64, []float64{1}},
		{flow, "transformations.1.int_time", []int{2}, Float32, []float64{0, 1}},
		{flow, "transformations.1.inv_int_time", []int{2}, Float32, []float64{1, 0}},
		{flow, eg + "embedding.weight", []int{64, 7}, Float32, nil},
		{flow, eg + "embedding_out.weight", []int{7, 64}, Float32, nil},
		{flow, eg + "gcl_5.edge_mlp.0.weight", []int{64, 130}, Float32, nil},
		{flow, eg + "gcl_0.coord_mlp.2.weight", []int{1, 64}, Float32, nil},
		{flow, eg + "gcl_3.att_mlp.0.bias", []int{1}, Float32, nil},
		{deq, "net_fn.egnn.embedding_out.weight", []int{12, 64}, Float32, nil},
		{deq, "net_fn.egnn.gcl_3.edge_mlp.0.weight", []int{64, 129}, Float32, nil},
	}
	for _, c := range cases {
		tt, ok := c.sd.Tensors[c.key]
		if !ok {
			t.Errorf("missing %s", c.key)
			continue
		}
		if !slices.Equal(tt.Shape, c.shape) || tt.DType != c.dtype {
			t.Errorf("%s: shape %v %s, want %v %s", c.key, tt.Shape, tt.DType, c.shape, c.dtype)
		}
		vals := tt.Float64s()
		for i, w := range c.want {
			if !near(vals[i], w, 1e-4) {
				t.Errorf("%s[%d] = %.6f, want %.4f", c.key, i, vals[i], w)
			}
		}
	}
	if _, ok := flow.Tensors[eg+"gcl_0.coord_mlp.2.bias"]; ok {
		t.Error("coord_mlp.2 should have no bias")
	}
	g, err := flow.Tensors["transformations.0.h_t"].GoMLX(dtypes.Float32)
	if err != nil || g.Shape().Size() != 6 || g.DType() != dtypes.Float32 {
		t.Errorf("GoMLX conversion: %v %v", g, err)
	}
}

func TestArgsPickle(t *testing.T) {
	ns, err := LoadNamespace(shared.Require(t, pretrained, "args.pickle"))
	if err != nil {
		t.Fatal(err)
	}
	str := func(k, want string) {
		if v, err := ns.String(k); err != nil || v != want {
			t.Errorf("%s = %q (%v), want %q", k, v, err, want)
		}
	}
	num := func(k string, want float64) {
		if v, err := ns.Float(k); err != nil || v != want {
			t.Errorf("%s = %v (%v), want %v", k, v, err, want)
		}
	}
	boolean := func(k string, want bool) {
		if v, err := ns.Bool(k); err != nil || v != want {
			t.Errorf("%s = %v (%v), want %v", k, v, err, want)
		}
	}
	str("model", "egnn_dynamics")
	str("dequantization", "argmax_variational")
	str("dataset", "qm9")
	str("trace", "hutch")
	str("x_aggregation", "sum")
	num("n_layers", 6)
	num("nf", 64)
	num("context_node_nf", 0)
	num("lr", 2e-4)
	num("ode_regularization", 0.001)
	num("batch_size", 128)
	num("current_epoch", 33)
	boolean("attention", true)
	boolean("tanh", true)
	boolean("actnorm", true)
	boolean("condition_time", true)
	if l, ok := ns["conditioning"].([]any); !ok || len(l) != 0 {
		t.Errorf("conditioning = %#v, want an empty list", ns["conditioning"])
	}
	if _, err := ns.Int("missing"); err == nil || !strings.Contains(err.Error(), "missing field missing") {
		t.Errorf("missing field error: %v", err)
	}
	if _, err := ns.Int("model"); err == nil {
		t.Error("Int on a string field should fail")
	}
}

// A synthetic state dict with a strided view, an int64 scalar and a shared storage.
func TestSyntheticStateDict(t *testing.T) {
	pkl := stateDictPickle(
		tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "0", numel: 6, size: []int64{2, 3}, stride: []int64{3, 1}},
		tensorSpec{key: "wT", storageClass: "FloatStorage", storageKey: "0", numel: 6, size: []int64{3, 2}, stride: []int64{1, 3}},
		tensorSpec{key: "tail", storageClass: "FloatStorage", storageKey: "0", numel: 6, offset: 4, size: []int64{2}, stride: []int64{1}},
		tensorSpec{key: "n", storageClass: "LongStorage", storageKey: "1", numel: 1, size: nil, stride: nil},
	)
	data := makeZip(t,
		zipEntry{name: "m/data.pkl", data: pkl},
		zipEntry{name: "m/data/0", data: f32bytes(1, 2, 3, 4, 5, 6)},
		zipEntry{name: "m/data/1", data: i64bytes(-7)},
		zipEntry{name: "m/version", data: []byte("3\n")},
	)
	sd, err := readZip(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sd.Keys, []string{"w", "wT", "tail", "n"}) {
		t.Fatalf("keys %v", sd.Keys)
	}
	checks := map[string][]float64{"w": {1, 2, 3, 4, 5, 6}, "wT": {1, 4, 2, 5, 3, 6}, "tail": {5, 6}, "n": {-7}}
	for k, want := range checks {
		if got := sd.Tensors[k].Float64s(); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if sd.Tensors["n"].DType != Int64 || len(sd.Tensors["n"].Shape) != 0 {
		t.Errorf("n: %s %v", sd.Tensors["n"].DType, sd.Tensors["n"].Shape)
	}
}

// deflatedRaw returns the raw deflate stream of data.
func deflatedRaw(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lyingZip stores name with a deflated body whose header declares declared bytes.
func lyingZip(t *testing.T, name string, body []byte, declared uint64) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	raw := deflatedRaw(t, body)
	f, err := w.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(body),
		CompressedSize64: uint64(len(raw)), UncompressedSize64: declared})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHostileFiles(t *testing.T) {
	okTensor := tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "0", numel: 2, size: []int64{2}, stride: []int64{1}}
	good := func(pkl []byte) []byte {
		return makeZip(t, zipEntry{name: "a/data.pkl", data: pkl}, zipEntry{name: "a/data/0", data: f32bytes(1, 2)})
	}
	evil := func(mod, name string) []byte { // GLOBAL mod.name; EMPTY_TUPLE; REDUCE
		return newPK().global(mod, name).str("echo pwned").op(opTuple1, opReduce).stop()
	}
	deep := newPK()
	for range 100000 {
		deep.mark()
	}
	nested := newPK().int(1) // ((((1,),),),…) 1000 levels deep, no MARK needed
	for range 1000 {
		nested.op(opTuple1)
	}
	selfRef := newPK().global("collections", "OrderedDict").op(opEmptyTuple, opReduce).
		str("x").op(opEmptyList, opBinPut, 0, opBinGet, 0, opAppend, opSetItem)
	zeros := make([]byte, 8<<20)

	cases := []struct {
		name string
		data []byte
		lim  Limits
		want string
	}{
		{"os.system global", good(evil("os", "system")), Limits{}, `refusing global "os.system"`},
		{"builtins.eval global", good(evil("builtins", "eval")), Limits{}, `refusing global "builtins.eval"`},
		{"posix.system via STACK_GLOBAL", good(newPK().str("posix").str("system").op(opStackGlobal).stop()), Limits{}, `refusing global "posix.system"`},
		{"torch.load global", good(evil("torch", "load")), Limits{}, `refusing global "torch.load"`},
		{"REDUCE of a storage class", good(newPK().global("torch", "FloatStorage").op(opEmptyTuple, opReduce).stop()), Limits{}, "torch.FloatStorage is not callable"},
		{"REDUCE of a string", good(newPK().str("os.system").op(opEmptyTuple, opReduce).stop()), Limits{}, "only allow-listed globals may be called"},
		{"INST opcode", good([]byte("\x80\x02ios\nsystem\n.")), Limits{}, "unsupported pickle opcode 0x69"},
		{"EXT1 opcode", good([]byte("\x80\x02\x82\x01.")), Limits{}, "unsupported pickle opcode 0x82"},
		{"10^12-element tensor", good(stateDictPickle(tensorSpec{key: "huge", storageClass: "FloatStorage", storageKey: "0", numel: 2,
			size: []int64{1000000, 1000000}, stride: []int64{1000000, 1}})), Limits{}, `key "huge": field size: shape [1000000 1000000] claims more than the limit`},
		{"10^12-element storage", good(stateDictPickle(tensorSpec{key: "huge", storageClass: "FloatStorage", storageKey: "0", numel: 1e12,
			size: []int64{2}, stride: []int64{1}})), Limits{}, `key "huge": field storage: storage "0" claims 1000000000000 elements`},
		{"view beyond storage", good(stateDictPickle(tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "0", numel: 2,
			size: []int64{3}, stride: []int64{1}})), Limits{}, `key "w": field size: shape [3]`},
		{"negative stride", good(stateDictPickle(tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "0", numel: 2,
			size: []int64{2}, stride: []int64{-1}})), Limits{}, "negative stride"},
		{"storage smaller than claimed", good(stateDictPickle(tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "0", numel: 3,
			size: []int64{3}, stride: []int64{1}})), Limits{}, `key "w": storage "0": zip entry has 8 bytes, the pickle claims 12`},
		{"missing storage", good(stateDictPickle(tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "9", numel: 2,
			size: []int64{2}, stride: []int64{1}})), Limits{}, `key "w": storage "9": missing zip entry a/data/9`},
		{"storage key traversal", good(stateDictPickle(tensorSpec{key: "w", storageClass: "FloatStorage", storageKey: "../../etc/passwd", numel: 2,
			size: []int64{2}, stride: []int64{1}})), Limits{}, "storage key ../../etc/passwd"},
		{"half storage", good(stateDictPickle(tensorSpec{key: "w", storageClass: "HalfStorage", storageKey: "0", numel: 2,
			size: []int64{2}, stride: []int64{1}})), Limits{}, "unsupported storage type torch.HalfStorage"},
		{"MARK nesting bomb", good(deep.stop()), Limits{}, "more than 64 nested MARKs"},
		{"tuple nesting bomb", good(nested.stop()), Limits{}, "nested deeper than 64"},
		{"self-referencing list", good(selfRef.stop()), Limits{}, "nested deeper than 64 levels (or self-referencing)"},
		{"opcode budget", good(stateDictPickle(okTensor)), Limits{MaxOps: 10}, "more than 10 opcodes"},
		{"not a dict", good(newPK().int(3).stop()), Limits{}, "data.pkl holds a int, want a state_dict"},
		{"value not a tensor", good(newPK().op(opEmptyDict).str("w").int(1).op(opSetItem).stop()), Limits{}, `key "w": value is a int, want a tensor`},
		{"truncated pickle", good(stateDictPickle(okTensor)[:40]), Limits{}, "unexpected end of pickle data"},
		{"path traversal entry", makeZip(t, zipEntry{name: "a/data.pkl", data: stateDictPickle(okTensor)},
			zipEntry{name: "a/../../evil", data: []byte("x")}), Limits{}, "path traversal"},
		{"absolute entry", makeZip(t, zipEntry{name: "/etc/cron.d/x", data: []byte("x")}), Limits{}, "absolute or malformed path"},
		{"no data.pkl", makeZip(t, zipEntry{name: "a/other", data: []byte("x")}), Limits{}, "no <archive>/data.pkl"},
		{"truncated zip", good(stateDictPickle(okTensor))[:100], Limits{}, "not a readable zip archive"},
		{"not a zip", []byte("\x80\x02}q\x00."), Limits{}, "not a readable zip archive"},
		{"zip bomb (declared)", makeZip(t, zipEntry{name: "a/data.pkl", data: zeros, deflate: true}), Limits{MaxPickleBytes: 1 << 20},
			"declares 8388608 bytes, more than the limit of 1048576"},
		// A header that under-declares: archive/zip's checksum reader stops at the declared size
		// (our LimitReader would stop at the limit otherwise); either way nothing big is read.
		{"zip bomb (lying header)", lyingZip(t, "a/data.pkl", zeros, 100), Limits{MaxPickleBytes: 1 << 20}, `zip entry "a/data.pkl": zip: not a valid zip file`},
		{"bad version", makeZip(t, zipEntry{name: "a/data.pkl", data: stateDictPickle(okTensor)}, zipEntry{name: "a/data/0", data: f32bytes(1, 2)},
			zipEntry{name: "a/version", data: []byte("99")}), Limits{}, `unsupported torch zip format version "99"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readZip(c.data, c.lim)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "torchimport: test.pt: ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// The control: the same builders produce a readable file.
	if _, err := readZip(good(stateDictPickle(okTensor)), Limits{}); err != nil {
		t.Fatalf("control file: %v", err)
	}
}

func TestHostileNamespace(t *testing.T) {
	ns := func(attrs func(p *pk)) []byte {
		p := newPK().global("argparse", "Namespace").op(opEmptyTuple, opNewObj).op(opEmptyDict).mark()
		attrs(p)
		return p.op(opSetItems, opBuild).stop()
	}
	cases := []struct {
		name string
		data []byte
		want string // "" = must succeed
	}{
		{"plain", ns(func(p *pk) {
			p.str("nf").int(64).str("lr").op(opBinFloat, 0x3f, 0x2a, 0x36, 0xe2, 0xeb, 0x1c, 0x43, 0x2d)
		}), ""},
		{"os.system value", ns(func(p *pk) { p.str("x").global("os", "system").str("id").op(opTuple1, opReduce) }), `refusing global "os.system"`},
		{"state-dict globals refused", ns(func(p *pk) { p.str("x").global("collections", "OrderedDict").op(opEmptyTuple, opReduce) }),
			`refusing global "collections.OrderedDict"`},
		{"subprocess", []byte("\x80\x02csubprocess\nPopen\n)R."), `refusing global "subprocess.Popen"`},
		{"not a namespace", newPK().int(1).stop(), "want an argparse.Namespace"},
		{"a zip file", []byte("PK\x03\x04rest"), "a zip archive (a torch.save file?)"},
		{"namespace with arguments", newPK().global("argparse", "Namespace").str("a").op(opTuple1, opNewObj).stop(), "called with 1 arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseNamespace(c.data, Limits{})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got["nf"] != int64(64) || !near(got["lr"].(float64), 2e-4, 1e-12) {
					t.Errorf("got %#v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := LoadStateDict("/nonexistent/flow.npy"); err == nil || !strings.Contains(err.Error(), "/nonexistent/flow.npy") {
		t.Errorf("missing file: %v", err)
	}
	dir := t.TempDir()
	p := dir + "/big.pickle"
	if err := os.WriteFile(p, make([]byte, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNamespaceWithLimits(p, Limits{MaxPickleBytes: 1024}); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("oversized pickle: %v", err)
	}
}
