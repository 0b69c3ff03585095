// Package ode integrates ordinary differential equations dy/dt = f(t, y) with GoMLX, for the
// continuous normalizing flows of package cnf.
//
// The design follows torchdiffeq (one Solve entry point, explicit Runge–Kutta methods in a small
// registry of Butcher tableaux, selected by name) and diffrax (the right-hand side, the stepping
// rule and the step-size controller are separate pieces):
//
//   - Func is the right-hand side; its state is a list of tensors (e.g. (x, logp, reg)), kept as
//     separate tensors rather than concatenated.
//   - Tableau (Dopri5, RK4 = 3/8 rule as torchdiffeq's "rk4", RK4Classic, Euler) defines a
//     method; Register adds more; Lookup finds them by name.
//   - Step builds one Runge–Kutta step inside a graph (all stages, the FSAL stage and the error
//     estimate); Integrate unrolls a sequence of steps in one differentiable graph.
//   - Solver drives a solve from Go. GoMLX v0.26.0 had no While op (v0.27 added one), and a
//     Go-driven loop is what the adjoint method and divergence recovery need anyway: the solver compiles ONE graph per step (inputs t, dt, y,
//     the FSAL stage k1 and constant args; outputs y1, the new FSAL stage and the error ratio) and
//     Go only accepts/rejects steps and picks the next size. Graphs are compiled once per input
//     shapes and cached.
//
// Adaptive control matches torchdiffeq's dopri5: error ratio = max over state tensors of
// RMS(err / (atol + rtol·max(|y0|, |y1|))) (its mixed norm for tuple states, so every tensor —
// for a CNF also logp and reg — takes part), the initial step of _select_initial_step,
// safety 0.9, ifactor 10, dfactor 0.2 (no shrinking after an accepted step), exponent 1/5.
// Differences: the last step is shortened to land exactly on t1 (torchdiffeq steps past t1 and
// interpolates), a non-finite error ratio rejects the step, and exceeding Options.MaxSteps or
// shrinking below Options.MinStep (or 1e-12·|t1−t0|) returns ErrMaxSteps / ErrStepSizeTooSmall
// instead of running forever.
//
// Solves run without gradients; stage inputs are detached (see Bind), so vector–Jacobian
// products taken inside f are local to each stage, as needed by adjoint methods. To differentiate
// through a solve, replay its accepted steps (Solution.Times, Solution.Steps) with Integrate.
package ode
