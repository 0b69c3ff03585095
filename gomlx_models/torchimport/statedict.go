package torchimport

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Limits bound what a file may claim. Zero fields take the defaults noted.
type Limits struct {
	MaxPickleBytes int64 // size of the pickle (data.pkl or args.pickle); default 64 MiB
	MaxDepth       int   // container nesting and open MARKs; default 64
	MaxStack       int   // unpickler stack entries; default 1<<20
	MaxMemo        int   // memo entries; default 1<<20
	MaxOps         int64 // opcodes; default 1<<24
	MaxElements    int64 // elements of one tensor or storage; default 1<<28
	MaxEntryBytes  int64 // uncompressed size of one zip entry; default 2 GiB
	MaxTotalBytes  int64 // uncompressed size of all storages read; default 4 GiB
	MaxEntries     int   // zip entries; default 100,000
}

func (l Limits) withDefaults() Limits {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defi := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxPickleBytes, 64<<20)
	defi(&l.MaxDepth, 64)
	defi(&l.MaxStack, 1<<20)
	defi(&l.MaxMemo, 1<<20)
	def(&l.MaxOps, 1<<24)
	def(&l.MaxElements, 1<<28)
	def(&l.MaxEntryBytes, 2<<30)
	def(&l.MaxTotalBytes, 4<<30)
	defi(&l.MaxEntries, 100000)
	return l
}

// DType is the element type of a stored tensor.
type DType string

// Supported storage element types.
const (
	Float32 DType = "float32"
	Float64 DType = "float64"
	Int64   DType = "int64"
	Int32   DType = "int32"
	Int16   DType = "int16"
	Int8    DType = "int8"
	Uint8   DType = "uint8"
	Bool    DType = "bool"
)

// storageTypes maps torch storage classes to element types and sizes.
var storageTypes = map[string]struct {
	dtype DType
	size  int64
}{
	"FloatStorage":  {Float32, 4},
	"DoubleStorage": {Float64, 8},
	"LongStorage":   {Int64, 8},
	"IntStorage":    {Int32, 4},
	"ShortStorage":  {Int16, 2},
	"CharStorage":   {Int8, 1},
	"ByteStorage":   {Uint8, 1},
	"BoolStorage":   {Bool, 1},
}

// Tensor is one tensor of a state dict, copied out of its storage in row-major order.
// Floating-point tensors have Float set, integer and bool tensors Int (bool as 0/1).
type Tensor struct {
	Key   string
	DType DType
	Shape []int
	Float []float64
	Int   []int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// IsFloat reports whether t holds floating-point values.
func (t *Tensor) IsFloat() bool { return t.DType == Float32 || t.DType == Float64 }

// Float64s returns the values as float64 (integers converted).
func (t *Tensor) Float64s() []float64 {
	if t.IsFloat() {
		return t.Float
	}
	out := make([]float64, len(t.Int))
	for i, v := range t.Int {
		out[i] = float64(v)
	}
	return out
}

// GoMLX returns the tensor as a GoMLX tensor of dtype (Float32 or Float64) with the same shape.
func (t *Tensor) GoMLX(dtype dtypes.DType) (*tensors.Tensor, error) {
	vals := t.Float64s()
	switch dtype {
	case dtypes.Float64:
		return tensors.FromFlatDataAndDimensions(append([]float64(nil), vals...), t.Shape...), nil
	case dtypes.Float32:
		out := tensors.FromShape(shapes.Make(dtypes.Float32, t.Shape...))
		tensors.MutableFlatData(out, func(flat []float32) {
			for i, v := range vals {
				flat[i] = float32(v)
			}
		})
		return out, nil
	}
	return nil, fmt.Errorf("torchimport: tensor %q: unsupported target dtype %s", t.Key, dtype)
}

// StateDict is a PyTorch state_dict read from a zip-format torch.save file.
type StateDict struct {
	File    string   // for messages
	Keys    []string // in file order
	Tensors map[string]*Tensor
}

// NumValues is the total number of tensor elements.
func (s *StateDict) NumValues() int {
	n := 0
	for _, t := range s.Tensors {
		n += t.NumElements()
	}
	return n
}

// GoMLX converts every tensor to a GoMLX tensor of dtype (e.g. for egnn.ImportTorch).
func (s *StateDict) GoMLX(dtype dtypes.DType) (map[string]*tensors.Tensor, error) {
	out := make(map[string]*tensors.Tensor, len(s.Tensors))
	for k, t := range s.Tensors {
		g, err := t.GoMLX(dtype)
		if err != nil {
			return nil, err
		}
		out[k] = g
	}
	return out, nil
}

// LoadStateDict reads a PyTorch state_dict saved with torch.save in the zip format (the
// en_flows "flow.npy" / "dequantizer.npy" files despite their extension) with the default
// Limits. The pickle may only use the globals of a state dict (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 and torch.*Storage); anything else is refused by name.
func LoadStateDict(file string) (*StateDict, error) {
	return LoadStateDictWithLimits(file, Limits{})
}

// LoadStateDictWithLimits is LoadStateDict with explicit limits.
func LoadStateDictWithLimits(file string, lim Limits) (*StateDict, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("torchimport: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("torchimport: %w", err)
	}
	return ReadStateDict(f, st.Size(), file, lim)
}

// ReadStateDict reads a zip-format torch.save state_dict of the given size from r; name is used
// in error messages.
func ReadStateDict(r io.ReaderAt, size int64, name string, lim Limits) (*StateDict, error) {
	sd, err := readStateDict(r, size, name, lim.withDefaults())
	if err != nil {
		return nil, fmt.Errorf("torchimport: %s: %w", name, err)
	}
	return sd, nil
}

// checkEntryName rejects names that could escape a directory if extracted (we never extract,
// but such names mark a crafted file).
func checkEntryName(n string) error {
	switch {
	case n == "" || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") || strings.ContainsRune(n, 0):
		return fmt.Errorf("zip entry %q: absolute or malformed path", n)
	case path.Clean(n) != strings.TrimSuffix(n, "/") || strings.HasPrefix(path.Clean(n), ".."):
		return fmt.Errorf("zip entry %q: path traversal or non-canonical path", n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return fmt.Errorf("zip entry %q: path traversal", n)
		}
	}
	return nil
}

// readEntry reads a whole zip entry, refusing more than limit bytes whatever the header says.
func readEntry(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("zip entry %q declares %d bytes, more than the limit of %d", f.Name, f.UncompressedSize64, limit)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("zip entry %q: %w", f.Name, err)
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, int(min(f.UncompressedSize64, 1<<20)))) // the declared size is untrusted
	n, err := io.Copy(buf, io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("zip entry %q: %w", f.Name, err)
	}
	if n > limit {
		return nil, fmt.Errorf("zip entry %q inflates beyond the limit of %d bytes", f.Name, limit)
	}
	if uint64(n) != f.UncompressedSize64 {
		return nil, fmt.Errorf("zip entry %q: read %d bytes, header declares %d", f.Name, n, f.UncompressedSize64)
	}
	return buf.Bytes(), nil
}

func readStateDict(r io.ReaderAt, size int64, name string, lim Limits) (*StateDict, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("not a readable zip archive (a torch.save zip file is expected): %w", err)
	}
	if len(zr.File) > lim.MaxEntries {
		return nil, fmt.Errorf("zip has %d entries, more than the limit of %d", len(zr.File), lim.MaxEntries)
	}
	entries := map[string]*zip.File{}
	prefix := ""
	var total uint64
	for _, f := range zr.File {
		if err := checkEntryName(f.Name); err != nil {
			return nil, err
		}
		total += f.UncompressedSize64
		if total > uint64(lim.MaxTotalBytes)+uint64(lim.MaxPickleBytes) {
			return nil, fmt.Errorf("zip entries declare more than %d bytes in total", lim.MaxTotalBytes+lim.MaxPickleBytes)
		}
		if _, dup := entries[f.Name]; dup {
			return nil, fmt.Errorf("duplicate zip entry %q", f.Name)
		}
		entries[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			if prefix != "" {
				return nil, fmt.Errorf("more than one data.pkl in the archive")
			}
			prefix = strings.TrimSuffix(f.Name, "data.pkl")
		}
	}
	if prefix == "" {
		return nil, fmt.Errorf("no <archive>/data.pkl entry: not a torch.save zip file")
	}
	if vf, ok := entries[prefix+"version"]; ok {
		v, err := readEntry(vf, 64)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(v)); s != "1" && s != "2" && s != "3" {
			return nil, fmt.Errorf("unsupported torch zip format version %q", s)
		}
	}
	pkl, err := readEntry(entries[prefix+"data.pkl"], lim.MaxPickleBytes)
	if err != nil {
		return nil, err
	}
	root, err := unpickle(pkl, stateDictGlobals, lim)
	if err != nil {
		return nil, fmt.Errorf("data.pkl: %w", err)
	}
	d, ok := root.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("data.pkl holds a %s, want a state_dict (OrderedDict of tensors)", typeName(root))
	}
	sd := &StateDict{File: name, Tensors: map[string]*Tensor{}}
	storages := map[string][]byte{}
	var read int64
	for i, k := range d.keys {
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("state_dict key #%d is a %s, want a string", i, typeName(k))
		}
		ref, ok := d.vals[i].(*tensorRef)
		if !ok {
			return nil, fmt.Errorf("key %q: value is a %s, want a tensor", key, typeName(d.vals[i]))
		}
		t, err := materialize(key, ref, lim, func(s *storageRef, nbytes int64) ([]byte, error) {
			if b, ok := storages[s.key]; ok {
				if int64(len(b)) != nbytes {
					return nil, fmt.Errorf("storage %q is used with two different sizes", s.key)
				}
				return b, nil
			}
			f, ok := entries[prefix+"data/"+s.key]
			if !ok {
				return nil, fmt.Errorf("storage %q: missing zip entry %s", s.key, prefix+"data/"+s.key)
			}
			if f.UncompressedSize64 != uint64(nbytes) {
				return nil, fmt.Errorf("storage %q: zip entry has %d bytes, the pickle claims %d", s.key, f.UncompressedSize64, nbytes)
			}
			if read += nbytes; read > lim.MaxTotalBytes {
				return nil, fmt.Errorf("storages exceed the limit of %d bytes in total", lim.MaxTotalBytes)
			}
			b, err := readEntry(f, nbytes)
			if err != nil {
				return nil, err
			}
			storages[s.key] = b
			return b, nil
		})
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		sd.Keys = append(sd.Keys, key)
		sd.Tensors[key] = t
	}
	return sd, nil
}

// mulCheck multiplies non-negative a·b, failing above limit.
func mulCheck(a, b, limit int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	if a > limit/b {
		return 0, false
	}
	return a * b, a*b <= limit
}

// materialize validates a tensor's claims against the limits and its storage, then copies it out.
func materialize(key string, ref *tensorRef, lim Limits, storage func(*storageRef, int64) ([]byte, error)) (*Tensor, error) {
	st := ref.storage
	if st.class.module != "torch" {
		return nil, fmt.Errorf("field storage: class %s is not a torch storage", st.class)
	}
	typ, ok := storageTypes[st.class.name]
	if !ok {
		return nil, fmt.Errorf("field storage: unsupported storage type %s", st.class)
	}
	if st.numel > lim.MaxElements {
		return nil, fmt.Errorf("field storage: storage %q claims %d elements, more than the limit of %d", st.key, st.numel, lim.MaxElements)
	}
	if len(ref.size) != len(ref.stride) {
		return nil, fmt.Errorf("field stride: %d strides for %d dimensions", len(ref.stride), len(ref.size))
	}
	if ref.offset < 0 {
		return nil, fmt.Errorf("field storage_offset: negative offset %d", ref.offset)
	}
	numel := int64(1)
	for i, d := range ref.size {
		if d < 0 {
			return nil, fmt.Errorf("field size: negative dimension %d at axis %d", d, i)
		}
		if ref.stride[i] < 0 {
			return nil, fmt.Errorf("field stride: negative stride %d at axis %d", ref.stride[i], i)
		}
		var ok bool
		if numel, ok = mulCheck(numel, d, lim.MaxElements); !ok {
			return nil, fmt.Errorf("field size: shape %v claims more than the limit of %d elements", ref.size, lim.MaxElements)
		}
	}
	// Largest storage index touched.
	if numel > 0 {
		last := ref.offset
		for i, d := range ref.size {
			step, ok := mulCheck(d-1, ref.stride[i], lim.MaxElements)
			if !ok {
				return nil, fmt.Errorf("field stride: strides %v with size %v reach beyond %d elements", ref.stride, ref.size, lim.MaxElements)
			}
			last += step
		}
		if last >= st.numel {
			return nil, fmt.Errorf("field size: shape %v (offset %d, strides %v) needs %d storage elements, storage %q has %d",
				ref.size, ref.offset, ref.stride, last+1, st.key, st.numel)
		}
	}
	raw, err := storage(st, st.numel*typ.size)
	if err != nil {
		return nil, err
	}
	t := &Tensor{Key: key, DType: typ.dtype, Shape: make([]int, len(ref.size))}
	for i, d := range ref.size {
		t.Shape[i] = int(d)
	}
	isFloat := typ.dtype == Float32 || typ.dtype == Float64
	if isFloat {
		t.Float = make([]float64, numel)
	} else {
		t.Int = make([]int64, numel)
	}
	idx := make([]int64, len(ref.size))
	for n := range numel {
		// Storage position of the n-th row-major element.
		p := ref.offset
		for i := range idx {
			p += idx[i] * ref.stride[i]
		}
		b := raw[p*typ.size : (p+1)*typ.size]
		switch typ.dtype {
		case Float32:
			t.Float[n] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		case Float64:
			t.Float[n] = math.Float64frombits(binary.LittleEndian.Uint64(b))
		case Int64:
			t.Int[n] = int64(binary.LittleEndian.Uint64(b))
		case Int32:
			t.Int[n] = int64(int32(binary.LittleEndian.Uint32(b)))
		case Int16:
			t.Int[n] = int64(int16(binary.LittleEndian.Uint16(b)))
		case Int8:
			t.Int[n] = int64(int8(b[0]))
		case Uint8, Bool:
			t.Int[n] = int64(b[0])
		}
		for i := len(idx) - 1; i >= 0; i-- {
			if idx[i]++; idx[i] < ref.size[i] {
				break
			}
			idx[i] = 0
		}
	}
	return t, nil
}

// SortedKeys returns the keys in lexical order.
func (s *StateDict) SortedKeys() []string {
	k := append([]string(nil), s.Keys...)
	sort.Strings(k)
	return k
}
