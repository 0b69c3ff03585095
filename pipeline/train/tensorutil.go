package train

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// floatTensor builds a tensor of dtype (float32 or float64) from float64 data.
func floatTensor(dtype dtypes.DType, data []float64, dims ...int) (*tensors.Tensor, error) {
	switch dtype {
	case dtypes.Float64:
		return tensors.FromFlatDataAndDimensions(append([]float64(nil), data...), dims...), nil
	case dtypes.Float32:
		f := make([]float32, len(data))
		for i, v := range data {
			f[i] = float32(v)
		}
		return tensors.FromFlatDataAndDimensions(f, dims...), nil
	}
	return nil, fmt.Errorf("train: unsupported tensor dtype %s", dtype)
}

// floatsOf copies a float32 or float64 tensor to []float64.
func floatsOf(t *tensors.Tensor) (out []float64, err error) {
	if t == nil {
		return nil, fmt.Errorf("train: nil tensor")
	}
	switch t.DType() {
	case dtypes.Float64:
		return tensors.CopyFlatData[float64](t)
	case dtypes.Float32:
		f, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			return nil, err
		}
		out = make([]float64, len(f))
		for i, v := range f {
			out[i] = float64(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("train: tensor dtype %s is not float32/float64", t.DType())
}

// scalarOf reads a scalar (or single-element) float tensor.
func scalarOf(t *tensors.Tensor) (float64, error) {
	v, err := floatsOf(t)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("train: expected a scalar, got shape %s", t.Shape())
	}
	return v[0], nil
}

// finalize releases tensors, ignoring nils and errors (memory hygiene only).
func finalize(ts ...*tensors.Tensor) {
	for _, t := range ts {
		if t != nil {
			_ = t.FinalizeAll()
		}
	}
}
