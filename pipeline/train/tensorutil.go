package train

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/enflow/enflow/internal/graphutil"
)

// The tensor helpers of this package are internal/graphutil's; these names remain for the
// callers in this package until they use graphutil directly.

// floatTensor builds a tensor of dtype (float32 or float64) from float64 data.
func floatTensor(dtype dtypes.DType, data []float64, dims ...int) (*tensors.Tensor, error) {
	return graphutil.Tensor(dtype, data, dims...)
}

// floatsOf copies a float32 or float64 tensor to []float64.
func floatsOf(t *tensors.Tensor) ([]float64, error) { return graphutil.Floats(t) }

// scalarOf reads a scalar (or single-element) float tensor.
func scalarOf(t *tensors.Tensor) (float64, error) { return graphutil.Float(t) }

// finalize releases tensors, ignoring nils and errors (memory hygiene only).
func finalize(ts ...*tensors.Tensor) { graphutil.Free(ts...) }
