// Command cron-singleton runs a job every 2 seconds on every copy of a
// service, and each tick runs on exactly one copy: start several, in several
// terminals, on a shared store, and watch them take turns.
//
//	go run ./examples/cron-singleton                    # in-memory, one copy
//	DLOCK_URL=redis://127.0.0.1:16379 go run ./examples/cron-singleton -id a
//	DLOCK_URL=redis://127.0.0.1:16379 go run ./examples/cron-singleton -id b
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/cron"
	"github.com/dlockgo/dlock/lock"
)

// options are the command line, as run takes it.
type options struct {
	url       string // the store; "" means mem://
	id        string // this replica's name
	keyPrefix string // the scheduler's lock-key prefix
}

func main() {
	o := options{url: os.Getenv("DLOCK_URL"), keyPrefix: "example/cron/"}
	host, _ := os.Hostname()
	flag.StringVar(&o.id, "id", fmt.Sprintf("%s/%d", host, os.Getpid()), "this replica's name")
	duration := flag.Duration("duration", 0, "stop after this long (default: at Ctrl-C)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		ctx, stop = context.WithTimeout(ctx, *duration)
		defer stop()
	}
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "cron-singleton:", err)
		os.Exit(1)
	}
}

// run runs one replica's scheduler until ctx ends.
func run(ctx context.Context, out io.Writer, o options) error {
	logf := log.New(out, o.id+"  ", log.Ltime|log.Lmicroseconds|log.Lmsgprefix).Printf
	locker, err := open(ctx, out, o)
	if err != nil {
		return err
	}
	defer locker.Close()

	sched, err := cron.New(locker, &cron.Options{
		KeyPrefix: o.keyPrefix,
		Logger:    slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn})), // store failures
	})
	if err != nil {
		return err
	}
	// Every replica adds the same job under the same name; the scheduler
	// names each tick's lock after the job and the tick's time, so the
	// replicas agree on which tick is which.
	err = sched.AddJob("report", "@every 2s", func(ctx context.Context) error {
		tick, _ := cron.TickFrom(ctx)
		token, _ := lock.TokenFrom(ctx) // fence the job's writes with it
		logf("ran tick %s (token %d)", tick.UTC().Format("15:04:05"), token)
		return nil
	}, nil)
	if err != nil {
		return err
	}

	logf("job \"report\" @every 2s; the ticks that other replicas run are not shown here")
	if err := sched.Run(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	logf("stopped")
	return nil
}

// open connects to the store named by o.url, or to an in-memory one.
func open(ctx context.Context, out io.Writer, o options) (lock.Locker, error) {
	if o.url == "" {
		o.url = "mem://"
		fmt.Fprintln(out, "in-memory store, this process only: set DLOCK_URL (e.g. redis://127.0.0.1:16379) to run several copies")
	}
	fmt.Fprintln(out, "store:", backends.Redact(o.url))
	cfg, err := backends.ParseURL(o.url)
	if err != nil {
		return nil, err
	}
	cfg.Identity = o.id
	return backends.Open(ctx, cfg)
}
