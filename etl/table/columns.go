package table

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Readers accept every Arrow encoding a tool may produce when it rewrites one of our files
// (e.g. DuckDB COPY … TO 'x.parquet', pandas, Polars): any integer width, float32 or float64,
// string / large_string / string_view / dictionary-of-string, and list / large_list /
// fixed_size_list / list_view. The column names must match exactly.

// kind is the logical type a reader expects of a column.
type kind int

const (
	kindInt        kind = iota // any integer
	kindFloat                  // float32 or float64
	kindString                 // utf8 family or dictionary of it
	kindIntList                // list of integers
	kindFloatList              // list of floats
	kindVec3List               // list of lists of floats (each inner list of length 3 is checked per row)
	kindIntVecList             // list of lists of integers (inner lengths are checked per row)
)

func (k kind) String() string {
	switch k {
	case kindInt:
		return "integer"
	case kindFloat:
		return "float"
	case kindString:
		return "string"
	case kindIntList:
		return "list<integer>"
	case kindFloatList:
		return "list<float>"
	case kindVec3List:
		return "list<fixed_size_list<float, 3>>"
	case kindIntVecList:
		return "list<fixed_size_list<integer, 3>>"
	}
	return "?"
}

type colSpec struct {
	name string
	kind kind
}

func isStringType(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return true
	case arrow.DICTIONARY:
		return isStringType(dt.(*arrow.DictionaryType).ValueType)
	}
	return false
}

func listElem(dt arrow.DataType) (arrow.DataType, bool) {
	if lt, ok := dt.(arrow.ListLikeType); ok {
		return lt.Elem(), true
	}
	return nil, false
}

func (k kind) accepts(dt arrow.DataType) bool {
	switch k {
	case kindInt:
		return arrow.IsInteger(dt.ID())
	case kindFloat:
		return dt.ID() == arrow.FLOAT64 || dt.ID() == arrow.FLOAT32
	case kindString:
		return isStringType(dt)
	case kindIntList:
		e, ok := listElem(dt)
		return ok && kindInt.accepts(e)
	case kindFloatList:
		e, ok := listElem(dt)
		return ok && kindFloat.accepts(e)
	case kindVec3List:
		e, ok := listElem(dt)
		return ok && kindFloatList.accepts(e)
	case kindIntVecList:
		e, ok := listElem(dt)
		return ok && kindIntList.accepts(e)
	}
	return false
}

// bindSchema checks the schema tag (when present) and that every wanted column exists with
// an acceptable type; it returns the column index of each wanted name.
func bindSchema(path string, schema *arrow.Schema, tag string, want []colSpec) (map[string]int, error) {
	if schema == nil {
		return nil, fmt.Errorf("table: %s: no schema", path)
	}
	md := schema.Metadata()
	if i := md.FindKey(MetaSchema); tag != "" && i >= 0 && md.Values()[i] != tag {
		return nil, fmt.Errorf("table: %s: wrong schema: %s is %q, want %q", path, MetaSchema, md.Values()[i], tag)
	}
	idx := make(map[string]int, len(want))
	for _, c := range want {
		is := schema.FieldIndices(c.name)
		if len(is) == 0 {
			hint := ""
			for _, f := range schema.Fields() {
				if strings.EqualFold(f.Name, c.name) {
					hint = fmt.Sprintf(" (found %q: column names are case-sensitive)", f.Name)
				}
			}
			return nil, fmt.Errorf("table: %s: not a %s table: missing column %q%s", path, tag, c.name, hint)
		}
		if len(is) > 1 {
			return nil, fmt.Errorf("table: %s: column %q appears %d times", path, c.name, len(is))
		}
		dt := schema.Field(is[0]).Type
		if !c.kind.accepts(dt) {
			return nil, fmt.Errorf("table: %s: column %q has type %s, want %s", path, c.name, dt, c.kind)
		}
		idx[c.name] = is[0]
	}
	return idx, nil
}

// bindOptional is bindSchema for columns a file may lack (added to a schema after files were
// written): absent columns are skipped, present ones must have an acceptable type.
func bindOptional(path string, schema *arrow.Schema, opt []colSpec) (map[string]int, error) {
	var present []colSpec
	for _, c := range opt {
		if len(schema.FieldIndices(c.name)) > 0 {
			present = append(present, c)
		}
	}
	return bindSchema(path, schema, "", present)
}

// Accessors. Each is built once per record batch and checks types with comma-ok assertions,
// so a schema that passed bindSchema cannot make them panic.

type intCol func(i int) (v int64, ok bool)

func intAccessor(a arrow.Array) intCol {
	valid := func(i int) bool { return a.IsValid(i) }
	switch a := a.(type) {
	case *array.Int8:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	case *array.Int16:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	case *array.Int32:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	case *array.Int64:
		return func(i int) (int64, bool) { return a.Value(i), valid(i) }
	case *array.Uint8:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	case *array.Uint16:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	case *array.Uint32:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	case *array.Uint64:
		return func(i int) (int64, bool) { return int64(a.Value(i)), valid(i) }
	}
	return func(int) (int64, bool) { return 0, false }
}

// floatValues returns the values of a float array as float64 (a view for float64 arrays, a
// converted copy for float32), or nil if a is not a float array.
func floatValues(a arrow.Array) []float64 {
	switch a := a.(type) {
	case *array.Float64:
		return a.Float64Values()
	case *array.Float32:
		v := a.Float32Values()
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	return nil
}

type floatCol struct {
	a arrow.Array
	v []float64
}

func floatAccessor(a arrow.Array) floatCol { return floatCol{a, floatValues(a)} }

// get returns the value at i, ok=false for null.
func (c floatCol) get(i int) (float64, bool) {
	if c.a.IsNull(i) || i >= len(c.v) {
		return 0, false
	}
	return c.v[i], true
}

type stringCol func(i int) (string, bool)

func stringAccessor(a arrow.Array) stringCol {
	var get func(i int) string
	switch a := a.(type) {
	case *array.String:
		get = a.Value
	case *array.LargeString:
		get = a.Value
	case *array.StringView:
		get = a.Value
	case *array.Dictionary:
		dict := stringAccessor(a.Dictionary())
		return func(i int) (string, bool) {
			if a.IsNull(i) {
				return "", false
			}
			return dict(a.GetValueIndex(i))
		}
	default:
		return func(int) (string, bool) { return "", false }
	}
	return func(i int) (string, bool) {
		if a.IsNull(i) {
			return "", false
		}
		return get(i), true
	}
}

// listCol gives the [start, end) range of row i in the child array, checked against its length.
type listCol struct {
	a     array.ListLike
	child arrow.Array
}

func listAccessor(a arrow.Array) (listCol, bool) {
	l, ok := a.(array.ListLike)
	if !ok {
		return listCol{}, false
	}
	return listCol{l, l.ListValues()}, true
}

// span returns the child range of row i; null=true for a null list.
func (c listCol) span(i int) (start, end int, null bool, err error) {
	if c.a.IsNull(i) {
		return 0, 0, true, nil
	}
	s, e := c.a.ValueOffsets(i)
	if s < 0 || e < s || e > int64(c.child.Len()) {
		return 0, 0, false, fmt.Errorf("corrupt list offsets [%d, %d) for %d values", s, e, c.child.Len())
	}
	return int(s), int(e), false, nil
}

// floats copies the float list of row i (nil for a null list, a non-nil empty slice for []).
func (c listCol) floats(i int, vals []float64) ([]float64, error) {
	s, e, null, err := c.span(i)
	if err != nil || null {
		return nil, err
	}
	if err := noNulls(c.child, s, e); err != nil {
		return nil, err
	}
	if e > len(vals) {
		return nil, fmt.Errorf("list values are not floats")
	}
	out := make([]float64, e-s)
	copy(out, vals[s:e])
	return out, nil
}

func noNulls(a arrow.Array, s, e int) error {
	if a.NullN() == 0 {
		return nil
	}
	for j := s; j < e; j++ {
		if a.IsNull(j) {
			return fmt.Errorf("null element at position %d", j-s)
		}
	}
	return nil
}
