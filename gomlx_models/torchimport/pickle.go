package torchimport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// A minimal, allow-listing unpickler. It understands the binary opcodes of pickle protocols 2–4
// that torch.save (zip format) and pickle.dump of plain data produce, builds inert Go values and
// never calls anything: "callables" are allow-listed globals whose effect is interpreted here
// (OrderedDict → *pyDict, _rebuild_tensor_v2 → *tensorRef, Namespace → *pyObject). Every other
// global is refused by name when it is first loaded, before anything could use it.

// Python values produced by the unpickler.
type (
	pyGlobal struct{ module, name string }
	pyTuple  []any
	pyList   struct{ items []any }
	// pyDict is an insertion-ordered dict; only str, int and bool keys are supported.
	pyDict struct {
		keys  []any
		vals  []any
		index map[any]int
	}
	// pyObject is an instance of an allow-listed class built with NEWOBJ/REDUCE (+ BUILD).
	pyObject struct {
		class pyGlobal
		attrs *pyDict // BUILD state (instance __dict__)
	}
	// storageRef is a persistent id ('storage', StorageClass, key, location, numel).
	storageRef struct {
		class    pyGlobal
		key      string
		location string
		numel    int64
	}
	// tensorRef is the (unvalidated) arguments of torch._utils._rebuild_tensor_v2.
	tensorRef struct {
		storage      *storageRef
		offset       int64
		size, stride []int64
		requiresGrad bool
	}
	pyMark struct{}
)

func (g pyGlobal) String() string { return g.module + "." + g.name }

func newDict() *pyDict { return &pyDict{index: map[any]int{}} }

func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool:
	default:
		return fmt.Errorf("unsupported dict key type %s", typeName(k))
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

func (d *pyDict) get(k string) (any, bool) {
	i, ok := d.index[k]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return "global " + v.String()
	case *pyObject:
		return v.class.String() + " object"
	case *storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	case pyMark:
		return "mark"
	}
	return fmt.Sprintf("%T", v)
}

// Globals allowed in PyTorch zip state dicts (torch.save of a state_dict).
var stateDictGlobals = map[string]bool{
	"collections.OrderedDict":         true,
	"torch._utils._rebuild_tensor_v2": true,
	"torch.FloatStorage":              true,
	"torch.DoubleStorage":             true,
	"torch.LongStorage":               true,
	"torch.IntStorage":                true,
	"torch.ShortStorage":              true,
	"torch.CharStorage":               true,
	"torch.ByteStorage":               true,
	"torch.BoolStorage":               true,
	"torch.HalfStorage":               true, // recognised so the error is "unsupported dtype", not "refused"
	"torch.BFloat16Storage":           true,
}

// Globals allowed in an argparse pickle (args.pickle).
var namespaceGlobals = map[string]bool{
	"argparse.Namespace": true,
}

// unpickler state. Limits are enforced as values are built; errors carry the opcode offset.
type unpickler struct {
	data    []byte
	pos     int
	allowed map[string]bool
	lim     Limits

	stack []any
	marks []int // stack lengths at MARK
	memo  map[int64]any
	ops   int64
}

var errTruncated = errors.New("unexpected end of pickle data")

// unpickle decodes one pickle from data.
func unpickle(data []byte, allowed map[string]bool, lim Limits) (any, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxPickleBytes {
		return nil, fmt.Errorf("pickle of %d bytes exceeds the limit of %d bytes", len(data), lim.MaxPickleBytes)
	}
	u := &unpickler{data: data, allowed: allowed, lim: lim, memo: map[int64]any{}}
	v, err := u.run()
	if err != nil {
		return nil, err
	}
	if err := checkDepth(v, lim.MaxDepth); err != nil {
		return nil, err
	}
	return v, nil
}

// checkDepth walks v and fails when containers nest deeper than limit (this also catches
// self-referencing containers, which memo tricks can build).
func checkDepth(v any, limit int) error {
	var walk func(v any, d int) error
	walk = func(v any, d int) error {
		if d > limit {
			return fmt.Errorf("containers nested deeper than %d levels (or self-referencing)", limit)
		}
		switch v := v.(type) {
		case pyTuple:
			for _, e := range v {
				if err := walk(e, d+1); err != nil {
					return err
				}
			}
		case *pyList:
			for _, e := range v.items {
				if err := walk(e, d+1); err != nil {
					return err
				}
			}
		case *pyDict:
			for _, e := range v.vals {
				if err := walk(e, d+1); err != nil {
					return err
				}
			}
		case *pyObject:
			if v.attrs != nil {
				return walk(v.attrs, d+1)
			}
		}
		return nil
	}
	return walk(v, 0)
}

func (u *unpickler) errorf(at int, format string, args ...any) error {
	return fmt.Errorf("pickle offset %d: %s", at, fmt.Sprintf(format, args...))
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, errTruncated
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", errTruncated
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) push(v any) error {
	if len(u.stack) >= u.lim.MaxStack {
		return fmt.Errorf("stack deeper than %d entries", u.lim.MaxStack)
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, errors.New("stack underflow")
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, errors.New("stack underflow")
	}
	return u.stack[n-1], nil
}

// popMark pops everything above the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errors.New("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoPut(i int64, v any) error {
	if i < 0 {
		return fmt.Errorf("negative memo index %d", i)
	}
	if _, ok := u.memo[i]; !ok && len(u.memo) >= u.lim.MaxMemo {
		return fmt.Errorf("more than %d memo entries", u.lim.MaxMemo)
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) memoGet(i int64) error {
	v, ok := u.memo[i]
	if !ok {
		return fmt.Errorf("memo index %d not defined", i)
	}
	return u.push(v)
}

// Pickle opcodes (subset; see Python's Lib/pickletools.py).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinString      = 'T'
	opShortBinString = 'U'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opBinBytes       = 'B'
	opShortBinBytes  = 'C'
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opBinBytes8      = 0x8e
	opEmptySet       = 0x8f
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

func (u *unpickler) run() (any, error) {
	for {
		at := u.pos
		if u.ops++; u.ops > u.lim.MaxOps {
			return nil, u.errorf(at, "more than %d opcodes", u.lim.MaxOps)
		}
		b, err := u.read(1)
		if err != nil {
			return nil, u.errorf(at, "%v (no STOP opcode)", err)
		}
		op := b[0]
		if op == opStop {
			if len(u.marks) > 0 || len(u.stack) != 1 {
				return nil, u.errorf(at, "STOP with %d values and %d open MARKs on the stack", len(u.stack), len(u.marks))
			}
			return u.stack[0], nil
		}
		if err := u.step(op, at); err != nil {
			if errors.Is(err, errTruncated) {
				return nil, u.errorf(at, "opcode 0x%02x: %v", op, err)
			}
			return nil, u.errorf(at, "%v", err)
		}
	}
}

func (u *unpickler) u8() (int64, error) {
	b, err := u.read(1)
	if err != nil {
		return 0, err
	}
	return int64(b[0]), nil
}

func (u *unpickler) u32() (int64, error) {
	b, err := u.read(4)
	if err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint32(b)), nil
}

func (u *unpickler) u64() (int64, error) {
	b, err := u.read(8)
	if err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(b)
	if v > math.MaxInt32 {
		return 0, fmt.Errorf("length %d too large", v)
	}
	return int64(v), nil
}

// lengthPrefix reads the length field of a counted string or bytes opcode: one byte for the
// SHORT forms, eight for the *8 forms, four otherwise.
func (u *unpickler) lengthPrefix(op byte) (int64, error) {
	switch op {
	case opShortBinUni, opShortBinString, opShortBinBytes:
		return u.u8()
	case opBinUnicode8, opBinBytes8:
		return u.u64()
	}
	return u.u32()
}

func (u *unpickler) str(n int64) (string, error) {
	b, err := u.read(int(n))
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errors.New("invalid UTF-8 in string")
	}
	return string(b), nil
}

func (u *unpickler) step(op byte, at int) error {
	switch op {
	case opProto:
		v, err := u.u8()
		if err != nil {
			return err
		}
		if v < 2 || v > 5 {
			return fmt.Errorf("unsupported pickle protocol %d (want 2–5)", v)
		}
		return nil
	case opFrame:
		_, err := u.read(8) // frames are an I/O hint; the whole pickle is in memory
		return err
	case opMark:
		if len(u.marks) >= u.lim.MaxDepth {
			return fmt.Errorf("more than %d nested MARKs", u.lim.MaxDepth)
		}
		u.marks = append(u.marks, len(u.stack))
		return nil
	case opPop:
		_, err := u.pop()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		return u.push(v)
	case opNone:
		return u.push(nil)
	case opNewTrue:
		return u.push(true)
	case opNewFalse:
		return u.push(false)
	case opBinInt:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		return u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opBinInt1:
		v, err := u.u8()
		if err != nil {
			return err
		}
		return u.push(v)
	case opBinInt2:
		b, err := u.read(2)
		if err != nil {
			return err
		}
		return u.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1:
		n, err := u.u8()
		if err != nil {
			return err
		}
		b, err := u.read(int(n))
		if err != nil {
			return err
		}
		if n > 8 {
			return fmt.Errorf("LONG1 of %d bytes does not fit in 64 bits", n)
		}
		var v uint64
		for i := int(n) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if n > 0 && n < 8 && b[n-1]&0x80 != 0 { // sign-extend
			v |= ^uint64(0) << (8 * uint(n))
		}
		return u.push(int64(v))
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		return u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opBinUnicode, opShortBinUni, opBinUnicode8:
		n, err := u.lengthPrefix(op)
		if err != nil {
			return err
		}
		s, err := u.str(n)
		if err != nil {
			return err
		}
		return u.push(s)
	case opBinString, opShortBinString, opBinBytes, opShortBinBytes, opBinBytes8:
		n, err := u.lengthPrefix(op)
		if err != nil {
			return err
		}
		b, err := u.read(int(n))
		if err != nil {
			return err
		}
		if op == opBinString || op == opShortBinString { // Python 2 str: treat as text
			return u.push(string(b))
		}
		return u.push(append([]byte(nil), b...))
	case opEmptyTuple:
		return u.push(pyTuple{})
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if len(u.stack) < n || (len(u.marks) > 0 && len(u.stack)-n < u.marks[len(u.marks)-1]) {
			return errors.New("stack underflow")
		}
		t := append(pyTuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = u.stack[:len(u.stack)-n]
		return u.push(t)
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(pyTuple(items))
	case opEmptyList:
		return u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(&pyList{items: items})
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.appendTo([]any{v})
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.appendTo(items)
	case opEmptyDict:
		return u.push(newDict())
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := newDict()
		if err := setItems(d, items); err != nil {
			return err
		}
		return u.push(d)
	case opSetItem:
		v, err := u.pop()
		if err != nil {
			return err
		}
		k, err := u.pop()
		if err != nil {
			return err
		}
		return u.setItemsOnTop([]any{k, v})
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.setItemsOnTop(items)
	case opBinPut, opLongBinPut:
		var i int64
		var err error
		if op == opBinPut {
			i, err = u.u8()
		} else {
			i, err = u.u32()
		}
		if err != nil {
			return err
		}
		v, err := u.top()
		if err != nil {
			return err
		}
		return u.memoPut(i, v)
	case opMemoize:
		v, err := u.top()
		if err != nil {
			return err
		}
		return u.memoPut(int64(len(u.memo)), v)
	case opBinGet:
		i, err := u.u8()
		if err != nil {
			return err
		}
		return u.memoGet(i)
	case opLongBinGet:
		i, err := u.u32()
		if err != nil {
			return err
		}
		return u.memoGet(i)
	case opGlobal:
		mod, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		return u.global(mod, name)
	case opStackGlobal:
		nv, err := u.pop()
		if err != nil {
			return err
		}
		mv, err := u.pop()
		if err != nil {
			return err
		}
		mod, ok1 := mv.(string)
		name, ok2 := nv.(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("STACK_GLOBAL needs two strings, got %s and %s", typeName(mv), typeName(nv))
		}
		return u.global(mod, name)
	case opReduce, opNewObj: // both apply a (whitelisted) callable or class to an argument tuple
		args, err := u.pop()
		if err != nil {
			return err
		}
		fn, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.call(fn, args)
		if err != nil {
			return err
		}
		return u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		return build(obj, state)
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		s, err := persistentLoad(pid)
		if err != nil {
			return err
		}
		return u.push(s)
	}
	return fmt.Errorf("unsupported pickle opcode 0x%02x (only plain data, allow-listed globals and tensor storages are accepted)", op)
}

// global resolves GLOBAL/STACK_GLOBAL: only allow-listed names pass.
func (u *unpickler) global(mod, name string) error {
	full := mod + "." + name
	if !u.allowed[full] {
		return fmt.Errorf("refusing global %q: not in the allow-list of this file type", full)
	}
	return u.push(pyGlobal{module: mod, name: name})
}

func (u *unpickler) appendTo(items []any) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	l, ok := v.(*pyList)
	if !ok {
		return fmt.Errorf("APPEND(S) on a %s, want a list", typeName(v))
	}
	l.items = append(l.items, items...)
	return nil
}

func (u *unpickler) setItemsOnTop(items []any) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	d, ok := v.(*pyDict)
	if !ok {
		return fmt.Errorf("SETITEM(S) on a %s, want a dict", typeName(v))
	}
	return setItems(d, items)
}

func setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("odd number (%d) of dict items", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// call interprets REDUCE/NEWOBJ of an allow-listed global. Nothing is executed.
func (u *unpickler) call(fn, args any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, fmt.Errorf("REDUCE/NEWOBJ of a %s: only allow-listed globals may be called", typeName(fn))
	}
	t, ok := args.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("%s called with %s arguments, want a tuple", g, typeName(args))
	}
	switch g.String() {
	case "collections.OrderedDict":
		if len(t) != 0 {
			return nil, fmt.Errorf("collections.OrderedDict called with %d arguments, want none", len(t))
		}
		return newDict(), nil
	case "argparse.Namespace":
		if len(t) != 0 {
			return nil, fmt.Errorf("argparse.Namespace called with %d arguments, want none", len(t))
		}
		return &pyObject{class: g}, nil
	case "torch._utils._rebuild_tensor_v2":
		return rebuildTensor(t)
	}
	return nil, fmt.Errorf("global %s is not callable", g)
}

// build interprets BUILD (setting an object's state).
func build(obj, state any) error {
	switch o := obj.(type) {
	case *pyObject:
		d, ok := state.(*pyDict)
		if !ok {
			return fmt.Errorf("BUILD of %s with a %s state, want a dict", o.class, typeName(state))
		}
		if o.attrs == nil {
			o.attrs = newDict()
		}
		for i, k := range d.keys {
			if _, ok := k.(string); !ok {
				return fmt.Errorf("BUILD of %s: attribute name of type %s", o.class, typeName(k))
			}
			if err := o.attrs.set(k, d.vals[i]); err != nil {
				return err
			}
		}
		return nil
	case *pyDict:
		// OrderedDict.__reduce__ state: the instance __dict__, e.g. {'_metadata': …} of a
		// state_dict. Accepted and ignored (it holds module versions only).
		if _, ok := state.(*pyDict); !ok && state != nil {
			return fmt.Errorf("BUILD of a dict with a %s state", typeName(state))
		}
		return nil
	}
	return fmt.Errorf("BUILD on a %s is not supported", typeName(obj))
}

// persistentLoad interprets a torch persistent id ('storage', StorageClass, key, location, numel).
func persistentLoad(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return nil, fmt.Errorf("persistent id must be a 5-tuple ('storage', class, key, location, numel), got %s", typeName(pid))
	}
	if s, _ := t[0].(string); s != "storage" {
		return nil, fmt.Errorf("persistent id of kind %v, want 'storage'", t[0])
	}
	cls, ok := t[1].(pyGlobal)
	if !ok || !strings.HasSuffix(cls.name, "Storage") {
		return nil, fmt.Errorf("persistent id storage class is a %s, want a torch storage", typeName(t[1]))
	}
	key, ok := t[2].(string)
	if !ok || !validStorageKey(key) {
		return nil, fmt.Errorf("persistent id storage key %v: want a short alphanumeric name", t[2])
	}
	loc, ok := t[3].(string)
	if !ok {
		return nil, fmt.Errorf("persistent id location is a %s, want a string", typeName(t[3]))
	}
	numel, ok := t[4].(int64)
	if !ok || numel < 0 {
		return nil, fmt.Errorf("persistent id numel %v: want a non-negative int", t[4])
	}
	return &storageRef{class: cls, key: key, location: loc, numel: numel}, nil
}

// validStorageKey accepts the keys torch writes (decimal ids, or names of [A-Za-z0-9_]).
func validStorageKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			return false
		}
	}
	return true
}

// rebuildTensor records the arguments of _rebuild_tensor_v2(storage, storage_offset, size,
// stride, requires_grad, backward_hooks[, metadata]). Sizes are validated later, per key.
func rebuildTensor(t pyTuple) (any, error) {
	if len(t) < 6 || len(t) > 7 {
		return nil, fmt.Errorf("_rebuild_tensor_v2 called with %d arguments, want 6 or 7", len(t))
	}
	st, ok := t[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2 field storage: a %s, want a storage", typeName(t[0]))
	}
	off, ok := t[1].(int64)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2 field storage_offset: a %s, want an int", typeName(t[1]))
	}
	ints := func(field string, v any) ([]int64, error) {
		tt, ok := v.(pyTuple)
		if !ok {
			return nil, fmt.Errorf("_rebuild_tensor_v2 field %s: a %s, want a tuple of ints", field, typeName(v))
		}
		if len(tt) > maxRank {
			return nil, fmt.Errorf("_rebuild_tensor_v2 field %s: rank %d exceeds %d", field, len(tt), maxRank)
		}
		out := make([]int64, len(tt))
		for i, e := range tt {
			n, ok := e.(int64)
			if !ok {
				return nil, fmt.Errorf("_rebuild_tensor_v2 field %s[%d]: a %s, want an int", field, i, typeName(e))
			}
			out[i] = n
		}
		return out, nil
	}
	size, err := ints("size", t[2])
	if err != nil {
		return nil, err
	}
	stride, err := ints("stride", t[3])
	if err != nil {
		return nil, err
	}
	rg, _ := t[4].(bool)
	// t[5] backward_hooks (an empty OrderedDict) and t[6] metadata are ignored.
	return &tensorRef{storage: st, offset: off, size: size, stride: stride, requiresGrad: rg}, nil
}

// maxRank bounds tensor ranks.
const maxRank = 16
