package backend

import (
	"strings"
	"testing"
)

func TestNewSpecs(t *testing.T) {
	t.Setenv(EnvVar, "")
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", "")
	for _, tc := range []struct {
		spec    string
		wantErr string // "" means success
	}{
		{"go", ""},
		{"simplego", ""},
		{"go:parallelism=-1", ""},
		{"go:ops_sequential,parallelism=0", ""},
		{"bogus", "unknown backend spec"},
		{"bogus:whatever", "unknown backend spec"},
		{"go:nonsense_option", "unknown configuration option"},
		{"go:parallelism=abc", "invalid value"},
		{"xla:cpu", "xla"},
		{"xla:cuda", "xla"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			b, err := New(tc.spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New(%q): %v", tc.spec, err)
				}
				b.Finalize()
				return
			}
			if err == nil {
				b.Finalize()
				t.Fatalf("New(%q) succeeded, want an error containing %q", tc.spec, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New(%q) error = %q, want it to contain %q", tc.spec, err, tc.wantErr)
			}
		})
	}
}

func TestNewFromEnv(t *testing.T) {
	t.Setenv(EnvVar, "bogus-from-env")
	if _, err := New(""); err == nil || !strings.Contains(err.Error(), "bogus-from-env") {
		t.Fatalf("New(\"\") with $%s=bogus-from-env: err=%v, want an error naming the spec", EnvVar, err)
	}
	t.Setenv(EnvVar, "go:parallelism=0")
	b, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	b.Finalize()
}

func TestNameNil(t *testing.T) {
	if Name(nil) != "<nil>" {
		t.Fatal("Name(nil)")
	}
}
