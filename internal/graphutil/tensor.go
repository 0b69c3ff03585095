package graphutil

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Floats copies a Float32 or Float64 tensor to []float64.
func Floats(t *tensors.Tensor) ([]float64, error) {
	if t == nil {
		return nil, fmt.Errorf("graphutil: nil tensor")
	}
	switch t.DType() {
	case dtypes.Float64:
		return tensors.CopyFlatData[float64](t)
	case dtypes.Float32:
		f, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(f))
		for i, v := range f {
			out[i] = float64(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("graphutil: tensor dtype %s is not Float32 or Float64", t.DType())
}

// MustFloats is Floats that panics on error.
func MustFloats(t *tensors.Tensor) []float64 {
	out, err := Floats(t)
	if err != nil {
		panic(err)
	}
	return out
}

// Float reads a single-element Float32 or Float64 tensor.
func Float(t *tensors.Tensor) (float64, error) {
	v, err := Floats(t)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("graphutil: expected a scalar, got shape %s", t.Shape())
	}
	return v[0], nil
}

// Tensor builds a tensor of dtype (Float32 or Float64) and dimensions dims from float64 data
// (copied).
func Tensor(dtype dtypes.DType, data []float64, dims ...int) (*tensors.Tensor, error) {
	switch dtype {
	case dtypes.Float64:
		return tensors.FromFlatDataAndDimensions(data, dims...), nil
	case dtypes.Float32:
		f := make([]float32, len(data))
		for i, v := range data {
			f[i] = float32(v)
		}
		return tensors.FromFlatDataAndDimensions(f, dims...), nil
	}
	return nil, fmt.Errorf("graphutil: dtype %s not supported (want Float32 or Float64)", dtype)
}

// MustTensor is Tensor that panics on error.
func MustTensor(dtype dtypes.DType, data []float64, dims ...int) *tensors.Tensor {
	t, err := Tensor(dtype, data, dims...)
	if err != nil {
		panic(err)
	}
	return t
}

// Free releases the tensors' memory, skipping nils and ignoring errors (memory hygiene only).
func Free(ts ...*tensors.Tensor) {
	for _, t := range ts {
		if t != nil {
			_ = t.FinalizeAll()
		}
	}
}
