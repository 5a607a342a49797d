package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dlockgo/dlock/lock"
)

// statusLine rewrites one line of a terminal, twice a second, with who
// holds the key being waited for.
type statusLine struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startStatus(ctx context.Context, w io.Writer, l lock.Locker, key string) *statusLine {
	ctx, cancel := context.WithCancel(ctx)
	s := &statusLine{cancel: cancel, done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		defer fmt.Fprint(w, "\r\x1b[K") // clear the line
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			who := describeHolder(ctx, l, key)
			if who == "" {
				who = " (holder unknown, or just released)"
			} else {
				who = " — held" + who
			}
			fmt.Fprintf(w, "\r\x1b[Kdlock: waiting for %s%s; waited %v…", lock.QuoteKey(key), who,
				time.Since(start).Truncate(time.Second))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the status line and clears it. A nil s is a no-op.
func (s *statusLine) stop() {
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
}
