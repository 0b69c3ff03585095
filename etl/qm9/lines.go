package qm9

import "bytes"

// lineReader walks the lines of an in-memory file without allocating. n is the 1-based
// number of the last line returned. A final line without "\n" counts as a line; an empty
// remainder after the last "\n" does not.
type lineReader struct {
	data []byte
	pos  int
	n    int
}

func (l *lineReader) next() ([]byte, bool) {
	if l.pos >= len(l.data) {
		return nil, false
	}
	rest := l.data[l.pos:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		l.pos = len(l.data)
		l.n++
		return rest, true
	}
	l.pos += i + 1
	l.n++
	return rest[:i], true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// splitFields appends the space/tab separated fields of line to dst (which it reuses).
func splitFields(line []byte, dst [][]byte) [][]byte {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return dst
		}
		j := i
		for j < len(line) && !isSpace(line[j]) {
			j++
		}
		dst = append(dst, line[i:j])
		i = j
	}
}
