package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/retry"
)

const runHelp = `Usage: dlock run --key K [flags] -- command [args…]

Takes the lock K (once, or waiting up to --wait), runs the command while
keeping the lock alive, and releases it when the command exits. The command
gets DLOCK_KEY and DLOCK_TOKEN (the fencing token: larger for every new
holder of K; pass it with the writes the lock protects) in its environment.
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to dlock are forwarded to the
command (which runs in a process group of its own). If the lock is lost
(the store says so, or it cannot be refreshed within its TTL) the command
gets SIGTERM, then SIGKILL after --grace, and dlock exits with 78.

While waiting on a terminal, a status line on stderr says who holds K.

Examples:
  # at most one backup at a time across the fleet; exit 75 if one is running
  dlock run --url redis://10.0.0.5:6379 --key backup -- ./backup.sh

  # wait up to 10 minutes for the previous run to finish
  dlock run --key migrate --wait 10m -- ./migrate up

  # crontab: skip this tick silently when another host has it
  */5 * * * * dlock run --quiet --key sync --busy-code 0 -- /usr/local/bin/sync

` + exitTable + "\n"

func (e env) run(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	c.register(fs)
	key := fs.String("key", "", "the lock's key (required)")
	ttl := fs.Duration("ttl", 30*time.Second, "the lock's TTL: how soon another host can take over if this one dies")
	wait := fs.Duration("wait", 0, "how long to wait for a held key (0: fail at once with the busy code)")
	grace := fs.Duration("grace", 10*time.Second, "time between SIGTERM and SIGKILL when the lock is lost")
	busyCode := fs.Int("busy-code", exitBusy, "exit code when the key is busy")
	if code := e.parse(fs, args, runHelp); code >= 0 {
		return code
	}
	switch {
	case *key == "":
		return e.usageErr("run", "--key is required")
	case fs.NArg() == 0:
		return e.usageErr("run", "no command given (put it after --)")
	case *ttl <= 0, *wait < 0, *grace < 0:
		return e.usageErr("run", "--ttl must be positive, --wait and --grace not negative")
	}
	if err := lock.ValidateKey(*key); err != nil {
		return e.usageErr("run", err.Error())
	}
	path, code, err := lookCommand(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(e.stderr, "dlock run: %v\n", err)
		return code
	}

	// Signals: before the command starts they abort the wait; after, they
	// are forwarded to it.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)

	l, cfg, err := e.open(ctx, &c)
	if err != nil {
		return e.fail("run", cfg, exitStore, err)
	}
	defer l.Close()

	lk, code := e.acquire(ctx, cancel, sigc, l, cfg, *key, *ttl, *wait, c.quiet, *busyCode)
	if lk == nil {
		return code
	}

	// The keepalive's context is not cancelled by signals: its end means
	// the lock is lost, and nothing else.
	held, stop := lock.Hold(context.Background(), lk, nil)
	ch, err := startChild(path, fs.Args(), *key, lk.Token())
	if err != nil {
		_ = stop()
		fmt.Fprintf(e.stderr, "dlock run: cannot start %s: %v\n", fs.Arg(0), err)
		return exitNoRun
	}
	for {
		select {
		case sig := <-sigc:
			ch.signal(sig.(syscall.Signal))
			continue
		case <-ch.done:
		case <-held.Done():
			if !c.quiet {
				fmt.Fprintf(e.stderr, "dlock run: lock %s lost (%s); stopping the command: SIGTERM, SIGKILL after %v\n",
					lock.QuoteKey(*key), oneLine(context.Cause(held), cfg), *grace)
			}
			if ch.stop(*grace) && !c.quiet {
				fmt.Fprintln(e.stderr, "dlock run: the command did not stop within --grace; killed")
			}
			_ = stop()
			return exitLost
		}
		break
	}
	lostDuring := held.Err() != nil // lost just as the command exited
	rerr := stop()
	switch {
	case lostDuring:
		fmt.Fprintf(e.stderr, "dlock run: lock %s was lost while the command ran (%s); the command exited with %d\n",
			lock.QuoteKey(*key), oneLine(context.Cause(held), cfg), ch.exitCode())
		return exitLost
	case errors.Is(rerr, lock.ErrLockNotHeld):
		fmt.Fprintf(e.stderr, "dlock run: lock %s had expired when the command exited; the command exited with %d\n",
			lock.QuoteKey(*key), ch.exitCode())
		return exitLost
	case rerr != nil && !c.quiet:
		fmt.Fprintf(e.stderr, "dlock run: warning: release failed, the lock will expire after its TTL: %s\n", oneLine(rerr, cfg))
	}
	return ch.exitCode()
}

func (e env) usageErr(cmd, msg string) int {
	fmt.Fprintf(e.stderr, "dlock %s: %s (see 'dlock %s --help')\n", cmd, msg, cmd)
	return exitUsage
}

// acquire takes key, once or waiting up to wait, with a live status line
// on a terminal. It returns the lock, or nil and the exit code.
func (e env) acquire(ctx context.Context, cancel context.CancelCauseFunc, sigc <-chan os.Signal, l lock.Locker,
	cfg *backends.Config, key string, ttl, wait time.Duration, quiet bool, busyCode int) (lock.Lock, int) {
	var sig os.Signal
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() { // a signal aborts the wait
		defer close(finished)
		select {
		case sig = <-sigc:
			cancel(fmt.Errorf("interrupted by %v", sig))
		case <-done:
		}
	}()
	var status *statusLine
	if wait > 0 && e.isTTY && !quiet {
		status = startStatus(ctx, e.stderr, l, key)
	}
	var lk lock.Lock
	var err error
	if wait == 0 {
		lk, err = l.Acquire(ctx, key, ttl)
	} else {
		lk, err = retry.Acquire(ctx, l, key, ttl, &retry.Options{MaxElapsedTime: wait, MaxInterval: time.Second})
	}
	status.stop()
	close(done)
	<-finished
	switch {
	case err == nil:
		return lk, 0
	case sig != nil:
		fmt.Fprintf(e.stderr, "dlock run: interrupted by %v while waiting for %s\n", sig, lock.QuoteKey(key))
		return nil, 128 + int(sig.(syscall.Signal))
	case errors.Is(err, lock.ErrLockNotAcquired):
		if !quiet {
			what := "is held"
			if wait > 0 {
				what = fmt.Sprintf("is still held after %v", wait)
			}
			fmt.Fprintf(e.stderr, "dlock run: %s %s%s\n", lock.QuoteKey(key), what, describeHolder(ctx, l, key))
		}
		return nil, busyCode
	default:
		return nil, e.fail("run", cfg, exitStore, err)
	}
}

// describeHolder returns " by NAME (token N, TTL left D)" for key's
// holder, or "" when the store cannot tell.
func describeHolder(ctx context.Context, l lock.Locker, key string) string {
	in, ok := l.(lock.Inspector)
	if !ok {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	h, held, err := in.Inspect(ctx, key)
	if err != nil || !held {
		return ""
	}
	return " by " + holderText(h)
}

func holderText(h lock.Holder) string {
	id := h.Identity
	if id == "" {
		id = "(no identity)"
	}
	s := fmt.Sprintf("%s, token %d", id, h.Token)
	if h.TTL > 0 {
		s += ", TTL left " + h.TTL.Round(100*time.Millisecond).String()
	}
	return s
}
