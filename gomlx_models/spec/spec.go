// Package spec holds the JSON-serialisable configuration records shared by every model kind:
// the EGNN and the continuous-flow settings stored in a run's model.json. The model packages
// convert them to their own configurations; pipeline/train stores them.
package spec

// EGNN is an EGNN's configuration (en_flows egnn_dynamics / EGNN_output_h arguments).
// CoordsRange is en_flows' total coords_range (15), split evenly over the layers when Tanh is set.
type EGNN struct {
	Hidden      int     `json:"hidden"`
	Layers      int     `json:"layers"`
	Attention   bool    `json:"attention"`
	Tanh        bool    `json:"tanh"`
	CoordsRange float64 `json:"coords_range"`
}

// CNF is the continuous-flow configuration (mirrors cnf.Config).
type CNF struct {
	Solver    string  `json:"solver"` // dopri5 | rk4 | rk4classic | euler
	RTol      float64 `json:"rtol"`
	ATol      float64 `json:"atol"`
	Steps     int     `json:"steps"` // fixed-step solvers
	Trace     string  `json:"trace"` // exact | hutchinson | analytic
	Noise     string  `json:"noise"` // gaussian | rademacher
	Grad      string  `json:"grad"`  // adjoint | backprop
	RegWeight float64 `json:"reg_weight"`
	MaxSteps  int     `json:"max_steps"`
	// ExactTraceMode selects how the exact trace is computed (cnf.Config.ExactTraceMode: "",
	// "loop" or "replicate"); empty means automatic. pipeline/train fills it from the
	// ENFLOW_EXACT_TRACE environment variable when a model is built.
	ExactTraceMode string `json:"exact_trace_mode,omitempty"`
}

// LayerCoordsRange is the per-layer tanh range of e: CoordsRange/Layers (en_flows divides its
// coords_range argument by the number of layers), or 0 when unset.
func (e EGNN) LayerCoordsRange() float64 {
	if e.CoordsRange > 0 && e.Layers > 0 {
		return e.CoordsRange / float64(e.Layers)
	}
	return 0
}

// RealNVP is the configuration of the non-equivariant RealNVP flow (gomlx_models/realnvp):
// zero values take that package's defaults (8 coupling layers, 64 × 2 tanh MLPs, log-scale
// bound 2).
type RealNVP struct {
	Layers       int     `json:"layers,omitempty"`
	Hidden       int     `json:"hidden,omitempty"`
	HiddenLayers int     `json:"hidden_layers,omitempty"`
	ScaleRange   float64 `json:"scale_range,omitempty"`
}
