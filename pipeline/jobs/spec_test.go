package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
)

func TestParseSpecErrors(t *testing.T) {
	const exp = "\n[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [100]\n"
	tests := []struct {
		name, text, want string
	}{
		{"unknown top-level key", "nmae = \"x\"" + exp, "unknown keys nmae"},
		{"unknown experiment key", "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [1]\nndata = 3\n", "unknown keys experiment.ndata"},
		{"syntax error with line", "name = \"x\"\nepochs = = 3\n", "spec.toml:2"},
		{"nothing to do", "name = \"x\"\n", "no [[experiment]] and no [[evaluation]]"},
		{"unknown dataset", "[[experiment]]\ndataset = \"qm10\"\nmodels = [\"enf\"]\nn_data = [1]\n", `unknown dataset "qm10"`},
		{"no models", "[[experiment]]\ndataset = \"dw4\"\nmodels = []\nn_data = [1]\n", "no models"},
		{"duplicate model", "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\", \"enf\"]\nn_data = [1]\n", "list a model twice"},
		{"bad n_data", "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [0]\n", "n_data 0 must be positive"},
		{"negative seed", "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [1]\nseeds = [-1]\n", "seed -1"},
		{"runner flag", "[train]\nn-data = 5\n" + exp, `"n-data" is set by the runner`},
		{"runner flag underscore", "[train]\nmodel = \"x\"\n" + exp, `"model" is set by the runner`},
		{"unknown override", "[train]\nepoch = 5\n" + exp, `unknown training override "epoch"`},
		{"int override given text", "[train]\nepochs = \"5\"\n" + exp, `"epochs": 5 (string) is not an integer`},
		{"int override fractional", "[train]\nepochs = 2.5\n" + exp, "not a non-negative integer"},
		{"string override given number", "[train]\nsolver = 4\n" + exp, "is not a string"},
		{"bool override given text", "[train]\nclip-adaptive = \"yes\"\n" + exp, "is not a boolean"},
		{"both spellings", "[train]\nmax-steps-per-epoch = 1\nmax_steps_per_epoch = 2\n" + exp, "given twice"},
		{"experiment override", "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [1]\n[experiment.train]\nlr = \"fast\"\n", "[experiment.train]"},
		{"eval without kind", exp + "[[evaluation]]\nn = 3\n", "kind is required"},
		{"eval bad kind", exp + "[[evaluation]]\nkind = \"fid\"\n", `unknown kind "fid"`},
		{"eval not applicable", exp + "[[evaluation]]\nkind = \"energy\"\ndatasets = [\"qm9\"]\n", "energy does not apply to dataset qm9"},
		{"standalone needs dataset", "[[evaluation]]\nkind = \"js\"\nsamples = \"x.parquet\"\n", "needs dataset"},
		{"standalone nll", "[[evaluation]]\nkind = \"nll\"\nsamples = \"x.parquet\"\ndataset = \"dw4\"\n", "needs a trained model"},
		{"standalone wrong dataset", "[[evaluation]]\nkind = \"stability\"\nsamples = \"x.parquet\"\ndataset = \"dw4\"\n", "stability does not apply to dataset dw4"},
		{"split on energy", exp + "[[evaluation]]\nkind = \"energy\"\nsplit = \"val\"\n", "split is an nll option"},
		{"bad trace", exp + "[[evaluation]]\nkind = \"nll\"\ntrace = \"exakt\"\n", `trace "exakt"`},
		{"bad code identity", "code_identity = \"commit\"" + exp, `code_identity "commit"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec("/x/spec.toml", []byte(tc.text))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Errorf("error %T is not a *SpecError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseSpecDefaults(t *testing.T) {
	s, err := ParseSpec("/x/my-spec.toml", []byte(testSpec+"\n[[evaluation]]\nkind = \"js\"\ndataset = \"qm9-positional\"\nsamples = \"d.parquet\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "unit-test" || s.CodeIdentity != "revision" || s.MaxAttempts != 2 {
		t.Errorf("spec defaults: name %q identity %q attempts %d", s.Name, s.CodeIdentity, s.MaxAttempts)
	}
	if got := s.Experiments[0].Seeds; len(got) != 1 || got[0] != 1 {
		t.Errorf("default seeds %v, want [1]", got)
	}
	e := s.Evaluations
	if e[0].N != 16 || e[0].Bins != 60 || e[0].Seed != 1 {
		t.Errorf("energy defaults: %+v", e[0])
	}
	if e[1].Split != "test" || e[1].Batch != 100 {
		t.Errorf("nll defaults: %+v", e[1])
	}
	if e[2].Label != "data" || e[2].NAtoms != 19 || e[2].N != 0 {
		t.Errorf("standalone js defaults: %+v", e[2])
	}
	s2, err := ParseSpec("/x/my-spec.toml", []byte("[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s2.Name != "my-spec" || s2.MaxAttempts != 3 {
		t.Errorf("name from file %q, max_attempts %d", s2.Name, s2.MaxAttempts)
	}
}

// TestTrainArgs: overrides become enflow train flags, booleans in the --flag=value form that Go's
// flag package needs.
func TestTrainArgs(t *testing.T) {
	s, err := ParseSpec("/x/s.toml", []byte("[train]\nreg = 0.0\nclip-adaptive = false\njs-samples = 200\nlr = 5e-4\n"+
		"[[experiment]]\ndataset = \"qm9-positional\"\nmodels = [\"enf\"]\nn_data = [10]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(trainArgs(s.Train), " ")
	want := "--clip-adaptive=false --js-samples 200 --lr 0.0005 --reg 0"
	if got != want {
		t.Errorf("trainArgs = %q, want %q", got, want)
	}
}

func TestExpandPath(t *testing.T) {
	t.Setenv("ENFLOW_TEST_OUT", "/tmp/o")
	t.Setenv("ENFLOW_TEST_EMPTY", "")
	for in, want := range map[string]string{
		"${ENFLOW_TEST_OUT}/data":            "/tmp/o/data",
		"${ENFLOW_TEST_OUT:-out}/data":       "/tmp/o/data",
		"${ENFLOW_TEST_EMPTY:-out}/data":     "out/data",
		"${ENFLOW_TEST_UNSET_XYZ:-out}/data": "out/data",
		"$ENFLOW_TEST_OUT/x":                 "/tmp/o/x",
		"plain/path":                         "plain/path",
	} {
		if got := ExpandPath(in); got != want {
			t.Errorf("ExpandPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIdentity checks what does and does not change a unit's identity.
func TestIdentity(t *testing.T) {
	base := t.TempDir()
	data := filepath.Join(base, "data")
	writeTinyParticles(t, data, particles.DW4, map[string]int{"train": 30, "val": 10, "test": 10}, 1)
	copyDir := filepath.Join(base, "copy")
	if err := os.MkdirAll(copyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"train", "val", "test"} {
		b, err := os.ReadFile(filepath.Join(data, "dw4_"+s+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copyDir, "dw4_"+s+".parquet"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(base, "other")
	writeTinyParticles(t, other, particles.DW4, map[string]int{"train": 30, "val": 10, "test": 10}, 2)

	const exp = "[[experiment]]\ndataset = \"dw4\"\nmodels = [\"enf\"]\nn_data = [10]\n"
	ids := func(text, dataDir, code string) []string {
		t.Helper()
		s, err := ParseSpec(filepath.Join(base, "s.toml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		p, err := Expand(s, PlanOptions{DataDir: dataDir, Code: CodeInfo{Version: code}})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, u := range p.Units {
			if u.InputErr != nil {
				t.Fatal(u.InputErr)
			}
			out = append(out, u.Hash)
		}
		return out
	}
	ref := ids("[train]\nepochs = 2\nlr = 0.001\n"+exp+"[[evaluation]]\nkind = \"energy\"\n", data, "v1")
	tests := []struct {
		name      string
		text      string
		data      string
		code      string
		sameTrain bool
	}{
		{"same spec", "[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v1", true},
		{"keys reordered, float written as 1e-3", "[train]\nlr = 1e-3\nepochs = 2\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v1", true},
		{"name and description do not matter", "name = \"other\"\ndescription = \"d\"\n[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v1", true},
		{"data copied elsewhere", "[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", copyDir, "v1", true},
		{"override changed", "[train]\nepochs = 3\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v1", false},
		{"data content changed", "[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", other, "v1", false},
		{"code changed", "[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v2", false},
		{"code changed but ignored", "code_identity = \"ignore\"\n[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v2", false},
		{"backend changed", "backend = \"xla:cpu\"\n[train]\nepochs = 2\nlr = 0.001\n" + exp + "[[evaluation]]\nkind = \"energy\"\n", data, "v1", false},
	}
	ignoreV1 := ids("code_identity = \"ignore\"\n[train]\nepochs = 2\nlr = 0.001\n"+exp+"[[evaluation]]\nkind = \"energy\"\n", data, "v1")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(tc.text, tc.data, tc.code)
			if len(got) != 2 {
				t.Fatalf("%d units, want 2", len(got))
			}
			if (got[0] == ref[0]) != tc.sameTrain {
				t.Errorf("training identity same=%v, want %v", got[0] == ref[0], tc.sameTrain)
			}
			// An attached evaluation follows its training unit.
			if (got[1] == ref[1]) != (got[0] == ref[0]) {
				t.Errorf("evaluation identity does not follow its training unit")
			}
		})
	}
	if got := ids("code_identity = \"ignore\"\n[train]\nepochs = 2\nlr = 0.001\n"+exp+"[[evaluation]]\nkind = \"energy\"\n", data, "v2"); got[0] != ignoreV1[0] {
		t.Errorf("code_identity = ignore: identity changed with the code version")
	}
	if got := ids("[train]\nepochs = 2\nlr = 0.001\n"+exp+"[[evaluation]]\nkind = \"energy\"\nn = 500\n", data, "v1"); got[0] != ref[0] || got[1] == ref[1] {
		t.Errorf("changing an evaluation must change only the evaluation's identity")
	}
}

// TestShippedSpecs parses every spec in jobs/ and checks its expansion.
func TestShippedSpecs(t *testing.T) {
	dir := filepath.Join("..", "..", "jobs")
	data := t.TempDir()
	writeTinyParticles(t, data, particles.DW4, map[string]int{"train": 10, "val": 5, "test": 5}, 1)
	writeTinyParticles(t, data, particles.LJ13, map[string]int{"train": 10, "val": 5, "test": 5}, 1)
	for _, sub := range []string{"dw4_bg_generalisation", "dw4_bg_discovery"} { // the bg specs' data_dir
		writeTinyParticles(t, filepath.Join(data, sub), particles.DW4, map[string]int{"train": 10, "val": 5, "test": 5}, 2)
	}
	caps := Capabilities{Dataset: func(ds string) error {
		if ds == DatasetDW4 || ds == DatasetLJ13 {
			return nil
		}
		return errors.New("not supported")
	}}
	tests := []struct {
		file                           string
		units, train, unsupported, std int
	}{
		{"mini.toml", 4, 2, 0, 0},
		{"table1_dw4.toml", 48, 24, 0, 0},
		{"table1_lj13.toml", 48, 24, 0, 0},
		{"table2_qm9.toml", 7, 3, 3, 1},
		{"table3_qm9_positional.toml", 13, 6, 6, 1},
		{"table3_qm9_positional_carved.toml", 5, 2, 2, 1},
		// Boltzmann generators: 3 two-stage training units × 3 seeds, each with nll train/test, ess and
		// energy (generalisation) or states, ess and energy (discovery, + the data's states).
		{"bg_generalisation.toml", 45, 9, 0, 0},
		{"bg_discovery.toml", 37, 9, 0, 1},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.toml"))
	if len(files) != len(tests) {
		t.Errorf("jobs/ has %d specs, the test knows %d: update it", len(files), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			s, err := LoadSpec(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Expand(s, PlanOptions{DataDir: data, Caps: caps, Code: CodeInfo{Version: "x"}})
			if err != nil {
				t.Fatal(err)
			}
			var train, unsup, std int
			for _, u := range p.Units {
				if u.Kind == KindTrain {
					train++
					if strings.HasPrefix(tc.file, "bg_") && u.Finetune == nil {
						t.Errorf("unit %s (%s) of %s has no finetune stage", u.ID, u.Model, tc.file)
					}
					if u.Unsupported != "" {
						unsup++
					} else if u.InputErr != nil {
						t.Errorf("unit %s: %v", u.ID, u.InputErr)
					}
				}
				if u.Samples != "" {
					std++
				}
			}
			if len(p.Units) != tc.units || train != tc.train || unsup != tc.unsupported || std != tc.std {
				t.Errorf("%d units (%d train, %d unsupported, %d standalone), want %d (%d, %d, %d)",
					len(p.Units), train, unsup, std, tc.units, tc.train, tc.unsupported, tc.std)
			}
		})
	}
	s, err := LoadSpec(filepath.Join(dir, "table1_dw4.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The paper's schedule comes from enflow train's defaults; the only spec-wide override is
	// the paper's 1000 validation/test rows (the DW4 files hold more).
	for k, v := range s.Train {
		if k != "eval-n" || fmt.Sprint(v) != "1000" {
			t.Errorf("table1_dw4 overrides %s = %v: the paper's schedule comes from enflow train's defaults", k, v)
		}
	}
	if s.CodeIdentity != "ignore" || !strings.HasPrefix(s.StateDir, "reports/results/") {
		t.Errorf("table1_dw4: code_identity %q, state_dir %q: want the committed record (ignore, reports/results/…)", s.CodeIdentity, s.StateDir)
	}
}

func TestShards(t *testing.T) {
	o, _ := newTestOptions(t, testSpec)
	p, err := Expand(o.Spec, PlanOptions{DataDir: o.DataDir, Code: o.Code})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3, 5} {
		seen := map[string]int{}
		groupShard := map[string]int{}
		for i := range n {
			sh, err := ParseShard(Shard{i, n}.String())
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range p.Units {
				if !sh.Contains(u) {
					continue
				}
				seen[u.ID]++
				if prev, ok := groupShard[u.Group]; ok && prev != i {
					t.Errorf("n=%d: group %s split over shards %d and %d", n, u.Group, prev, i)
				}
				groupShard[u.Group] = i
			}
		}
		for _, u := range p.Units {
			if seen[u.ID] != 1 {
				t.Errorf("n=%d: unit %s in %d shards, want exactly 1", n, u.ID, seen[u.ID])
			}
		}
	}
	for _, bad := range []string{"2/2", "-1/2", "1/0", "x", "1/2/3", "01/2"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted", bad)
		}
	}
}
