package cnf

import "github.com/gomlx/gomlx/pkg/ml/context"

// testSeed fixes the variable initializers of the tests' contexts: GoMLX seeds them from the
// clock when ParamInitialSeed is 0, which made tolerances depend on the run.
const testSeed = 20211206

// seededContext is context.New() with a fixed initializer seed.
func seededContext() *context.Context {
	ctx := context.New()
	ctx.SetParam(context.ParamInitialSeed, int64(testSeed))
	return ctx
}
