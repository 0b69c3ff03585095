package qm9

import (
	"strconv"
	"strings"
)

// ParseError locates a failure inside a QM9 .xyz file: the archive (if any), the file or
// archive member, the 1-based line and the field. Err is the underlying cause.
type ParseError struct {
	Archive string // archive file name, "" for a standalone file
	File    string // file or member name
	Line    int    // 1-based line number, 0 if not tied to a line
	Field   string // field name (e.g. "x", "n_atoms", "index"), "" if none
	Err     error
}

// Error formats as "qm9: [ARCHIVE: member ]FILE line N: field F: cause".
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("qm9: ")
	if e.Archive != "" {
		b.WriteString(e.Archive)
		b.WriteString(": member ")
	}
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(" line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Field != "" {
		b.WriteString(": field ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("invalid")
	}
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }
