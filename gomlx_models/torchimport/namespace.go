package torchimport

import (
	"bytes"
	"fmt"
	"os"
	"sort"
)

// Namespace is an argparse.Namespace read from a pickle: attribute name → value, where values
// are nil, bool, int64, float64, string, []byte, []any (lists and tuples) or map[string]any.
type Namespace map[string]any

// LoadNamespace reads a pickled argparse.Namespace (e.g. en_flows' args.pickle) with the
// default Limits. Only the global argparse.Namespace is allowed; anything else is refused.
func LoadNamespace(file string) (Namespace, error) {
	return LoadNamespaceWithLimits(file, Limits{})
}

// LoadNamespaceWithLimits is LoadNamespace with explicit limits.
func LoadNamespaceWithLimits(file string, lim Limits) (Namespace, error) {
	lim = lim.withDefaults()
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("torchimport: %w", err)
	}
	if st.Size() > lim.MaxPickleBytes {
		return nil, fmt.Errorf("torchimport: %s: %d bytes, more than the limit of %d", file, st.Size(), lim.MaxPickleBytes)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("torchimport: %w", err)
	}
	ns, err := ParseNamespace(data, lim)
	if err != nil {
		return nil, fmt.Errorf("torchimport: %s: %w", file, err)
	}
	return ns, nil
}

// ParseNamespace decodes a pickled argparse.Namespace from memory.
func ParseNamespace(data []byte, lim Limits) (Namespace, error) {
	lim = lim.withDefaults()
	if bytes.HasPrefix(data, []byte("PK\x03\x04")) {
		return nil, fmt.Errorf("a zip archive (a torch.save file?), not a pickled argparse.Namespace")
	}
	root, err := unpickle(data, namespaceGlobals, lim)
	if err != nil {
		return nil, err
	}
	obj, ok := root.(*pyObject)
	if !ok || obj.class.String() != "argparse.Namespace" {
		return nil, fmt.Errorf("pickle holds a %s, want an argparse.Namespace", typeName(root))
	}
	ns := Namespace{}
	if obj.attrs == nil {
		return ns, nil
	}
	for i, k := range obj.attrs.keys {
		name := k.(string) // build() only accepts string attribute names
		v, err := plain(obj.attrs.vals[i], lim.MaxDepth)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
		ns[name] = v
	}
	return ns, nil
}

// plain converts an unpickled value to plain Go data.
func plain(v any, depth int) (any, error) {
	if depth < 0 {
		return nil, fmt.Errorf("nested too deeply")
	}
	switch v := v.(type) {
	case nil, bool, int64, float64, string, []byte:
		return v, nil
	case pyTuple:
		out := make([]any, len(v))
		for i, e := range v {
			p, err := plain(e, depth-1)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	case *pyList:
		return plain(pyTuple(v.items), depth)
	case *pyDict:
		out := make(map[string]any, len(v.keys))
		for i, k := range v.keys {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("dict key of type %s", typeName(k))
			}
			p, err := plain(v.vals[i], depth-1)
			if err != nil {
				return nil, err
			}
			out[ks] = p
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value %s", typeName(v))
}

// Keys returns the attribute names in lexical order.
func (ns Namespace) Keys() []string {
	k := make([]string, 0, len(ns))
	for n := range ns {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// String returns attribute name as a string, failing when missing or of another type.
func (ns Namespace) String(name string) (string, error) {
	v, ok := ns[name]
	if !ok {
		return "", fmt.Errorf("args: missing field %s", name)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("args: field %s is %T, want a string", name, v)
	}
	return s, nil
}

// Int returns attribute name as an int.
func (ns Namespace) Int(name string) (int, error) {
	v, ok := ns[name]
	if !ok {
		return 0, fmt.Errorf("args: missing field %s", name)
	}
	i, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("args: field %s is %T, want an int", name, v)
	}
	return int(i), nil
}

// Bool returns attribute name as a bool.
func (ns Namespace) Bool(name string) (bool, error) {
	v, ok := ns[name]
	if !ok {
		return false, fmt.Errorf("args: missing field %s", name)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("args: field %s is %T, want a bool", name, v)
	}
	return b, nil
}

// Float returns attribute name as a float64 (ints are converted).
func (ns Namespace) Float(name string) (float64, error) {
	v, ok := ns[name]
	if !ok {
		return 0, fmt.Errorf("args: missing field %s", name)
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("args: field %s is %T, want a number", name, v)
}
