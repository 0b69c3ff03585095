package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "out.txt")
	tests := []struct {
		name    string
		fn      func(w io.Writer) error
		want    string // expected content after the call; "" means file absent
		wantErr bool
	}{
		{"ok", func(w io.Writer) error { _, err := io.WriteString(w, "hello"); return err }, "hello", false},
		{"failure keeps old", func(w io.Writer) error { io.WriteString(w, "partial"); return errors.New("boom") }, "hello", true},
		{"overwrite", func(w io.Writer) error { _, err := io.WriteString(w, "world"); return err }, "world", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(path, tc.fn)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			got, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if string(got) != tc.want {
				t.Fatalf("content = %q, want %q", got, tc.want)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries, want only the target (no temp files)", len(entries))
			}
		})
	}
}
