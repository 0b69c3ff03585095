package qm9

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// uncharacterizedData is the list of the 3054 uncharacterized gdb ids, one per line
// (from jla-gardner/load-atoms, taken from figshare file 3195404; CC0 / MIT).
//
//go:embed uncharacterized_ids.txt
var uncharacterizedData []byte

var builtinUncharacterized = sync.OnceValues(func() ([]int64, error) {
	return ParseUncharacterized(bytes.NewReader(uncharacterizedData), "built-in uncharacterized_ids.txt")
})

// Uncharacterized returns a copy of the built-in list of the 3054 uncharacterized gdb ids,
// sorted ascending.
func Uncharacterized() []int64 {
	ids, err := builtinUncharacterized()
	if err != nil {
		// The embedded file is checked by the tests; this cannot happen in a released build.
		return nil
	}
	return append([]int64(nil), ids...)
}

// ReadUncharacterized reads an uncharacterized list from a file (see ParseUncharacterized).
func ReadUncharacterized(path string) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("qm9: uncharacterized list: %w", err)
	}
	defer f.Close()
	return ParseUncharacterized(f, filepath.Base(path))
}

// ParseUncharacterized parses the official figshare uncharacterized.txt (a table after a
// header, first column the 1-based index) or a plain list with one id per line. Following
// Cormorant, every line whose first whitespace-separated token parses as an integer
// contributes that integer; all other lines (headers, footers, blank lines, comments) are
// ignored. The result must hold exactly NumUncharacterized distinct ids in 1..NumMolecules;
// it is returned sorted ascending. name is used in error messages.
func ParseUncharacterized(r io.Reader, name string) ([]int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	seen := make(map[int64]int, NumUncharacterized)
	var ids []int64
	line := 0
	for sc.Scan() {
		line++
		tok := firstToken(sc.Bytes())
		if tok == nil {
			continue
		}
		id, err := strconv.ParseInt(string(tok), 10, 64)
		if err != nil {
			continue
		}
		if id < 1 || id > NumMolecules {
			return nil, fmt.Errorf("qm9: %s line %d: field index: id %d outside 1..%d", name, line, id, NumMolecules)
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("qm9: %s line %d: field index: id %d repeated (first on line %d)", name, line, id, prev)
		}
		seen[id] = line
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("qm9: %s line %d: %w", name, line+1, err)
	}
	if len(ids) != NumUncharacterized {
		return nil, fmt.Errorf("qm9: %s: found %d ids, want exactly %d uncharacterized molecules", name, len(ids), NumUncharacterized)
	}
	slices.Sort(ids)
	return ids, nil
}

// firstToken returns the first space- or tab-separated token of a line, or nil.
func firstToken(b []byte) []byte {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	if i == j {
		return nil
	}
	return b[i:j]
}
