package qm9

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuiltinUncharacterized(t *testing.T) {
	ids := Uncharacterized()
	if len(ids) != NumUncharacterized {
		t.Fatalf("%d ids, want %d", len(ids), NumUncharacterized)
	}
	if !slices.IsSorted(ids) || ids[0] != 58 || ids[len(ids)-1] != 133866 {
		t.Errorf("not sorted or wrong range: first %d last %d", ids[0], ids[len(ids)-1])
	}
	want := readIDList(t, sharedFile(t, "qm9/uncharacterized_ids_3054_from_load-atoms.txt"))
	if !slices.Equal(ids, want) {
		t.Error("built-in list differs from the shared file")
	}
	ids[0] = -1 // must be a copy
	if Uncharacterized()[0] != 58 {
		t.Error("Uncharacterized returned shared storage")
	}
}

// figshareText renders ids in a layout like the official uncharacterized.txt: a text header,
// a table whose first column is the index, and a footer.
func figshareText(ids []int64) string {
	var b strings.Builder
	b.WriteString(" Molecules that failed the consistency check\n")
	b.WriteString(" between the B3LYP geometry and the GDB-17 SMILES.\n\n")
	b.WriteString("   Index   SMILES (GDB-17)   SMILES (B3LYP)   Count\n")
	b.WriteString(" ------------------------------------------------------\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "  %6d\tC%dCO\tC=CO  \t%d\n", id, i%7, i%3)
	}
	b.WriteString(" ------------------------------------------------------\n")
	b.WriteString(" Total: see header\n")
	return b.String()
}

func plainText(ids []int64) string {
	var b strings.Builder
	b.WriteString("# uncharacterized gdb ids\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d\n", id)
	}
	return b.String()
}

func TestParseUncharacterized(t *testing.T) {
	ids := Uncharacterized()
	shuffled := slices.Clone(ids)
	slices.Reverse(shuffled)
	withDup := slices.Clone(ids)
	withDup[10] = withDup[11]
	outOfRange := slices.Clone(ids)
	outOfRange[5] = NumMolecules + 3
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{"figshare layout", figshareText(ids), ""},
		{"plain list", plainText(ids), ""},
		{"plain list unsorted, CRLF", strings.ReplaceAll(plainText(shuffled), "\n", "\r\n"), ""},
		{"one id short", plainText(ids[1:]), "found 3053 ids"},
		{"one id too many", plainText(ids) + "1\n", "found 3055 ids"},
		{"duplicate", figshareText(withDup), "repeated"},
		{"out of range", plainText(outOfRange), "outside 1..133885"},
		{"empty", "", "found 0 ids"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUncharacterized(strings.NewReader(tc.text), "uncharacterized.txt")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "uncharacterized.txt") {
					t.Fatalf("error = %v, want one containing %q and the file name", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, ids) {
				t.Errorf("parsed %d ids, not equal to the built-in list", len(got))
			}
		})
	}
}

func TestReadUncharacterizedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "uncharacterized.txt")
	if err := os.WriteFile(p, []byte(figshareText(Uncharacterized())), 0o644); err != nil {
		t.Fatal(err)
	}
	ids, err := ReadUncharacterized(p)
	if err != nil || len(ids) != NumUncharacterized {
		t.Fatalf("ReadUncharacterized: %d ids, err %v", len(ids), err)
	}
	if _, err := ReadUncharacterized(filepath.Join(dir, "missing.txt")); err == nil {
		t.Error("missing file: want error")
	}
}
