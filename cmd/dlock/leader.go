package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/leader"
	"github.com/dlockgo/dlock/lock"
)

const leaderHelp = `Usage: dlock leader --key K [flags] -- command [args…]

Campaigns for the leadership named K and runs the command only while this
process leads. DLOCK_KEY and DLOCK_TOKEN (the term: larger for every new
leader) are in the command's environment. When leadership is lost the
command gets SIGTERM, then SIGKILL after --grace, and dlock campaigns again;
when the command exits by itself dlock steps down and campaigns again after
a pause. With --once, dlock exits instead: with the command's status, or 78
when leadership was lost. SIGINT or SIGTERM stop the command the same way
and end dlock.

A leader that dies is replaced after --ttl.

Examples:
  # one active scheduler among three replicas, each started the same way
  dlock leader --url etcd://10.0.0.7:2379 --key scheduler -- ./scheduler

  # run the migration on whichever host wins, once
  dlock leader --once --key migrate-v42 -- ./migrate up

` + exitTable + "\n"

func (e env) leader(args []string) int {
	fs := flag.NewFlagSet("leader", flag.ContinueOnError)
	var c common
	c.register(fs)
	key := fs.String("key", "", "the election's key (required)")
	ttl := fs.Duration("ttl", 15*time.Second, "leadership lease: how soon another replica takes over if this one dies")
	grace := fs.Duration("grace", 10*time.Second, "time between SIGTERM and SIGKILL when leadership ends")
	once := fs.Bool("once", false, "exit after the first term instead of campaigning again")
	if code := e.parse(fs, args, leaderHelp); code >= 0 {
		return code
	}
	switch {
	case *key == "":
		return e.usageErr("leader", "--key is required")
	case fs.NArg() == 0:
		return e.usageErr("leader", "no command given (put it after --)")
	case *ttl <= 0, *grace < 0:
		return e.usageErr("leader", "--ttl must be positive, --grace not negative")
	}
	if err := lock.ValidateKey(*key); err != nil {
		return e.usageErr("leader", err.Error())
	}
	path, code, err := lookCommand(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(e.stderr, "dlock leader: %v\n", err)
		return code
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	l, cfg, err := e.open(ctx, &c)
	if err != nil {
		return e.fail("leader", cfg, exitStore, err)
	}
	defer l.Close()
	// The elector keeps campaigning through store failures; say so.
	var logger *slog.Logger
	if !c.quiet {
		logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{
			Level: slog.LevelWarn,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				if a.Key == "err" {
					if err, ok := a.Value.Any().(error); ok {
						return slog.String("err", oneLine(err, cfg))
					}
				}
				return a
			},
		}))
	}
	el, err := leader.New(l, *key, &leader.Options{Identity: cfg.Identity, TTL: *ttl, Logger: logger})
	if err != nil {
		return e.fail("leader", cfg, exitUsage, err)
	}

	runCtx, endRun := context.WithCancel(ctx)
	defer endRun()
	last := -1 // exit code of the last term
	err = el.Run(runCtx, func(lctx context.Context) error {
		term, _ := leader.TermFrom(lctx)
		if !c.quiet {
			fmt.Fprintf(e.stderr, "dlock leader: leading %s (term %d); starting the command\n", lock.QuoteKey(*key), term)
		}
		ch, err := startChild(path, fs.Args(), *key, term)
		if err != nil {
			fmt.Fprintf(e.stderr, "dlock leader: cannot start %s: %v\n", fs.Arg(0), err)
			last = exitNoRun
			if *once {
				endRun()
			}
			return err
		}
		var reason error
		select {
		case <-ch.done:
			last = ch.exitCode()
			if !c.quiet {
				fmt.Fprintf(e.stderr, "dlock leader: the command exited with %d; stepping down\n", last)
			}
		case <-lctx.Done():
			reason = context.Cause(lctx)
			if ctx.Err() == nil && !c.quiet {
				fmt.Fprintf(e.stderr, "dlock leader: leadership of %s lost (%s); stopping the command: SIGTERM, SIGKILL after %v\n",
					lock.QuoteKey(*key), oneLine(reason, cfg), *grace)
			}
			ch.stop(*grace)
			last = ch.exitCode()
			if ctx.Err() == nil {
				last = exitLost
			}
		}
		if *once {
			endRun()
		}
		if errors.Is(reason, lock.ErrLockNotHeld) {
			return reason
		}
		return nil
	})
	switch {
	case ctx.Err() != nil: // a signal
		if last >= 0 {
			return last
		}
		return 130
	case *once && last >= 0:
		return last
	case err != nil && !errors.Is(err, context.Canceled):
		return e.fail("leader", cfg, exitStore, err)
	}
	return 0
}
