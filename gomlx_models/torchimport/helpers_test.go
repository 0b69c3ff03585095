package torchimport

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// pk builds pickle byte streams opcode by opcode (protocol 2, as torch.save writes).
type pk struct{ bytes.Buffer }

func newPK() *pk {
	p := &pk{}
	p.WriteByte(opProto)
	p.WriteByte(2)
	return p
}

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }
func (p *pk) mark() *pk        { return p.op(opMark) }
func (p *pk) global(mod, name string) *pk {
	p.WriteByte(opGlobal)
	p.WriteString(mod + "\n" + name + "\n")
	return p
}
func (p *pk) str(s string) *pk {
	p.WriteByte(opBinUnicode)
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(s)))
	p.Write(n[:])
	p.WriteString(s)
	return p
}
func (p *pk) int(v int64) *pk {
	switch {
	case v >= 0 && v < 256:
		return p.op(opBinInt1, byte(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(int32(v)))
		p.WriteByte(opBinInt)
		p.Write(n[:])
		return p
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(v))
	p.op(opLong1, 8)
	p.Write(n[:])
	return p
}
func (p *pk) ints(vs ...int64) *pk {
	p.mark()
	for _, v := range vs {
		p.int(v)
	}
	return p.op(opTuple)
}
func (p *pk) stop() []byte { p.WriteByte(opStop); return p.Bytes() }

// tensorSpec is one tensor of a synthetic state dict.
type tensorSpec struct {
	key, storageClass, storageKey string
	numel                         int64 // storage elements claimed in the persistent id
	offset                        int64
	size, stride                  []int64
}

// rebuild appends the _rebuild_tensor_v2(...) REDUCE of t (torch.save layout).
func (p *pk) rebuild(t tensorSpec) *pk {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.mark()
	p.mark().str("storage").global("torch", t.storageClass).str(t.storageKey).str("cpu").int(t.numel).op(opTuple)
	p.op(opBinPersID)
	p.int(t.offset).ints(t.size...).ints(t.stride...).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	p.op(opTuple, opReduce)
	return p
}

// stateDictPickle is the data.pkl of an OrderedDict of the given tensors.
func stateDictPickle(ts ...tensorSpec) []byte {
	p := newPK()
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	p.mark()
	for _, t := range ts {
		p.str(t.key)
		p.rebuild(t)
	}
	p.op(opSetItems)
	p.op(opEmptyDict).str("_metadata").global("collections", "OrderedDict").op(opEmptyTuple, opReduce).op(opSetItem)
	p.op(opBuild)
	return p.stop()
}

// zipEntry is a file of a synthetic archive.
type zipEntry struct {
	name    string
	data    []byte
	deflate bool
}

func makeZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range entries {
		m := zip.Store
		if e.deflate {
			m = zip.Deflate
		}
		f, err := w.CreateHeader(&zip.FileHeader{Name: e.name, Method: m})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func f32bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func i64bytes(vs ...int64) []byte {
	b := make([]byte, 8*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return b
}

func readZip(data []byte, lim Limits) (*StateDict, error) {
	return ReadStateDict(bytes.NewReader(data), int64(len(data)), "test.pt", lim)
}
