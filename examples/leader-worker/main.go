// Command leader-worker runs a worker on one copy of a service only, the
// elected leader. Run several copies on a shared store: one works, the others
// stand by. Ctrl-C the leader: it resigns and another takes over at once, with
// a larger term (after a kill -9, the takeover waits for the 5s lease).
//
//	go run ./examples/leader-worker                    # in-memory, one copy
//	DLOCK_URL=redis://127.0.0.1:16379 go run ./examples/leader-worker -id a
//	DLOCK_URL=redis://127.0.0.1:16379 go run ./examples/leader-worker -id b
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/leader"
	"github.com/dlockgo/dlock/lock"
)

type options struct {
	url string // the store; "" means mem://
	id  string // this replica's name
	key string // the election's lock key
}

func main() {
	o := options{url: os.Getenv("DLOCK_URL"), key: "example/leader-worker"}
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
		fmt.Fprintln(os.Stderr, "leader-worker:", err)
		os.Exit(1)
	}
}

// run runs one replica until ctx ends, then resigns.
func run(ctx context.Context, out io.Writer, o options) error {
	logf := log.New(out, o.id+"  ", log.Ltime|log.Lmicroseconds|log.Lmsgprefix).Printf
	locker, err := open(ctx, out, o)
	if err != nil {
		return err
	}
	defer locker.Close()

	e, err := leader.New(locker, o.key, &leader.Options{
		Identity: o.id,
		TTL:      5 * time.Second, // after a crash, the standbys wait this long
		OnNewLeader: func(l leader.Info) {
			if l.Identity != o.id {
				logf("standing by; the leader is %s, term %d", l.Identity, l.Term)
			}
		},
	})
	if err != nil {
		return err
	}
	work := func(ctx context.Context) error {
		term, _ := leader.TermFrom(ctx) // larger for every new leader: fence writes with it
		logf("elected, term %d: the worker starts", term)
		for n := 1; ; n++ {
			select {
			case <-ctx.Done(): // lost, resigned, or shutting down: stop writing now
				logf("term %d over: %v", term, context.Cause(ctx))
				return nil
			case <-time.After(time.Second):
				logf("term %d: work item %d done", term, n)
			}
		}
	}

	logf("campaigning for %q", o.key)
	campaign, stopCampaign := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCampaign()
	done := make(chan struct{})
	go func() { defer close(done); e.Run(campaign, work) }()
	<-ctx.Done()
	// Resign: the worker stops and the lock is released now, so a standby
	// takes over at once instead of after the TTL.
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Resign(rctx); err != nil { // nil when not leading
		logf("resign: %v", err)
	}
	stopCampaign()
	<-done
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
	cfg.PostgresRecordHolders = true // so that standbys can see who leads
	return backends.Open(ctx, cfg)
}
