// Command enflow is the command line of enflow: ETL, training, evaluation, sampling,
// metrics, batch jobs and reports for E(n) equivariant normalizing flows.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/enflow/enflow/pipeline/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
