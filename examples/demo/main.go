// Command demo shows dlock doing its whole job: three simulated replicas of
// one service, in one process, coordinate a leader-elected worker, a
// singleton cron job, an exactly-once job and per-resource HTTP requests —
// on the embedded in-memory store, or on a real one named by DLOCK_URL.
//
//	go run ./examples/demo                      # in-memory, no servers
//	DLOCK_URL=redis://127.0.0.1:16379 go run ./examples/demo
//
// Midway, the leader "crashes": its connection to the store is cut, and
// another replica takes over when the lease runs out, with a new term. The
// demo ends with a summary and exits non-zero if anything ran twice.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlockgo/dlock/cron"
	"github.com/dlockgo/dlock/httpmw"
	"github.com/dlockgo/dlock/leader"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
	"github.com/dlockgo/dlock/once"
)

func main() {
	duration := flag.Duration("duration", 20*time.Second, "how long the demo runs")
	flag.Parse()
	if err := run(os.Stdout, os.Getenv("DLOCK_URL"), *duration); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const replicas = 3

// replica is one simulated process: its own connection to the store (which
// the demo can cut, to simulate a crash), its own elector, scheduler and
// HTTP server.
type replica struct {
	name    string
	conn    *locktest.Faulty
	locker  lock.Locker
	url     string // its HTTP server
	crashed atomic.Bool
}

// stats is what the summary reports.
type stats struct {
	mu             sync.Mutex
	ticks          map[time.Time][]string // cron tick → replicas that ran it
	leaders        []string               // "replica-2 (term 5)", in order
	onceRuns       atomic.Int32
	onceDone       atomic.Int32
	httpStatus     map[int]int
	maxInFlight    map[string]int
	inFlight       map[string]int
	leaderOverlaps atomic.Int32
	leading        atomic.Int32
	current        *replica // the replica leading now, or nil
}

func run(out io.Writer, storeURL string, duration time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	var logMu sync.Mutex
	logf := func(who, format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(out, "%6.2fs  %-10s %s\n", time.Since(start).Seconds(), who, fmt.Sprintf(format, args...))
	}

	st, err := openStore(ctx, storeURL)
	if err != nil {
		return err
	}
	defer st.close()
	logf("demo", "store: %s; %d replicas; %v", st.name, replicas, duration)
	// Keys of this run, so that runs against a shared server do not meet.
	run := fmt.Sprintf("demo/%d/", time.Now().UnixNano())

	s := &stats{ticks: map[time.Time][]string{}, httpStatus: map[int]int{}, maxInFlight: map[string]int{}, inFlight: map[string]int{}}
	reps := make([]*replica, replicas)
	for i := range reps {
		r := &replica{name: fmt.Sprintf("replica-%d", i+1)}
		b, err := st.backend(ctx)
		if err != nil {
			return err
		}
		r.conn = locktest.NewFaulty(b)
		if r.locker, err = lock.New(r.conn, &lock.Options{Identity: r.name}); err != nil {
			return err
		}
		defer r.locker.Close()
		reps[i] = r
	}

	var wg sync.WaitGroup
	// 1. Exactly-once: every replica asks for the same job at start-up.
	for _, r := range reps {
		wg.Go(func() {
			res, err := once.Do(ctx, r.locker, st.records, run+"welcome-email", func(ctx context.Context, token uint64) error {
				logf(r.name, "once: sending the welcome e-mail (token %d)", token)
				s.onceRuns.Add(1)
				return nil
			}, nil)
			switch {
			case err != nil:
				logf(r.name, "once: %v", err)
			case res.State == once.AlreadyDone:
				s.onceDone.Add(1)
				logf(r.name, "once: welcome e-mail already sent (by token %d) — skipped", res.Token)
			}
		})
	}
	wg.Wait()

	// 2. Leader election, with a crash midway.
	for _, r := range reps {
		e, err := leader.New(r.locker, run+"worker", &leader.Options{Identity: r.name, TTL: 3 * time.Second})
		if err != nil {
			return err
		}
		wg.Go(func() {
			e.Run(ctx, func(ctx context.Context) error {
				term, _ := leader.TermFrom(ctx)
				if s.leading.Add(1) != 1 {
					s.leaderOverlaps.Add(1)
				}
				defer s.leading.Add(-1)
				s.mu.Lock()
				s.leaders = append(s.leaders, fmt.Sprintf("%s (term %d)", r.name, term))
				s.current = r
				s.mu.Unlock()
				logf(r.name, "leader: elected, term %d — starting the worker", term)
				<-ctx.Done()
				s.mu.Lock()
				if s.current == r {
					s.current = nil
				}
				s.mu.Unlock()
				logf(r.name, "leader: stepped down (%v)", context.Cause(ctx))
				return nil
			})
		})
	}
	wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(duration / 2):
		}
		s.mu.Lock()
		r := s.current
		s.mu.Unlock()
		if r != nil {
			logf(r.name, "CRASH: the process dies; its connection to the store is cut")
			r.crashed.Store(true)
			r.conn.Cut()     // nothing it sends arrives any more
			r.locker.Close() // and its client closes, as the OS would close its sockets
		}
	})

	// 3. A singleton cron job every 2s.
	for _, r := range reps {
		sched, err := cron.New(r.locker, &cron.Options{KeyPrefix: run + "cron/"})
		if err != nil {
			return err
		}
		err = sched.AddJob("report", "@every 2s", func(ctx context.Context) error {
			tick, _ := cron.TickFrom(ctx)
			token, _ := lock.TokenFrom(ctx)
			s.mu.Lock()
			s.ticks[tick] = append(s.ticks[tick], r.name)
			s.mu.Unlock()
			logf(r.name, "cron: report for tick %s (token %d)", tick.Format("15:04:05"), token)
			return nil
		}, nil)
		if err != nil {
			return err
		}
		wg.Go(func() { sched.Run(ctx) })
	}

	// 4. Per-resource HTTP middleware: a server per replica.
	for _, r := range reps {
		srv, url, err := serve(r, s, logf, run)
		if err != nil {
			return err
		}
		r.url = url
		defer func() {
			// Let handlers finish and release their locks.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
	}
	wg.Go(func() { fireRequests(ctx, reps, s, logf, duration) })

	wg.Wait()
	return summary(out, s, start, duration)
}

// serve starts r's HTTP server on a free loopback port.
func serve(r *replica, s *stats, logf func(string, string, ...any), run string) (*http.Server, string, error) {
	mux := http.NewServeMux()
	handler := func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		token, _ := httpmw.TokenFrom(req.Context())
		s.mu.Lock()
		s.inFlight[id]++
		s.maxInFlight[id] = max(s.maxInFlight[id], s.inFlight[id])
		s.mu.Unlock()
		logf(r.name, "http: account %s — transfer starts (token %d)", id, token)
		work := 300 * time.Millisecond
		if req.URL.Query().Has("slow") {
			work = 2 * time.Second
		}
		time.Sleep(work) // the work
		logf(r.name, "http: account %s — transfer done", id)
		s.mu.Lock()
		s.inFlight[id]--
		s.mu.Unlock()
	}
	waiting := httpmw.New(r.locker, &httpmw.Options{PathValue: "id", Wait: 10 * time.Second, KeyPrefix: run + "http/"})
	failFast := httpmw.New(r.locker, &httpmw.Options{PathValue: "id", KeyPrefix: run + "http/"})
	mux.Handle("POST /accounts/{id}/transfers", waiting(http.HandlerFunc(handler)))
	mux.Handle("POST /accounts/{id}/transfers/now", failFast(http.HandlerFunc(handler)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, "http://" + ln.Addr().String(), nil
}

// fireRequests sends concurrent transfers for two accounts to all replicas,
// then a fail-fast one while an account is busy.
func fireRequests(ctx context.Context, reps []*replica, s *stats, logf func(string, string, ...any), duration time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(duration / 5):
	}
	logf("client", "http: 6 concurrent transfers on accounts A and B, spread over the 3 replicas")
	var wg sync.WaitGroup
	for i := range 6 {
		account := []string{"A", "B"}[i%2]
		url := reps[i%len(reps)].url + "/accounts/" + account + "/transfers"
		wg.Go(func() { post(ctx, url, s) })
	}
	wg.Wait()

	var live []*replica // the replicas that have not crashed
	for _, r := range reps {
		if !r.crashed.Load() {
			live = append(live, r)
		}
	}
	logf("client", "http: a slow transfer on account C, then a fail-fast one while C is busy")
	wg.Go(func() { post(ctx, live[len(live)-1].url+"/accounts/C/transfers?slow=1", s) })
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		busy := s.inFlight["C"] > 0
		s.mu.Unlock()
		if busy {
			break
		}
	}
	code, retryAfter := post(ctx, live[0].url+"/accounts/C/transfers/now", s)
	logf("client", "http: fail-fast transfer on account C → %d %s (Retry-After: %s)", code, http.StatusText(code), retryAfter)
	wg.Wait()
}

func post(ctx context.Context, url string, s *stats) (status int, retryAfter string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}

	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.mu.Lock()
	s.httpStatus[resp.StatusCode]++
	s.mu.Unlock()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func summary(out io.Writer, s *stats, start time.Time, duration time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dups := 0
	for _, rs := range s.ticks {
		if len(rs) > 1 {
			dups++
		}
	}
	var statuses []string
	for code, n := range s.httpStatus {
		statuses = append(statuses, fmt.Sprintf("%d×%d", n, code))
	}
	sort.Strings(statuses)
	maxIn := 0
	for _, n := range s.maxInFlight {
		maxIn = max(maxIn, n)
	}
	fmt.Fprintf(out, "\nSummary after %.1fs\n", time.Since(start).Seconds())
	rows := [][2]string{
		{"cron ticks run", fmt.Sprint(len(s.ticks))},
		{"cron ticks run twice (duplicates)", fmt.Sprint(dups)},
		{"leaders, in order", strings.Join(s.leaders, " → ")},
		{"leader changes", fmt.Sprint(max(len(s.leaders)-1, 0))},
		{"two leaders at once", fmt.Sprint(s.leaderOverlaps.Load())},
		{"once: runs / already done", fmt.Sprintf("%d / %d", s.onceRuns.Load(), s.onceDone.Load())},
		{"http requests by status", strings.Join(statuses, ", ")},
		{"http max in flight per account", fmt.Sprint(maxIn)},
	}
	for _, r := range rows {
		fmt.Fprintf(out, "  %-34s %s\n", r[0], r[1])
	}
	switch {
	case dups > 0:
		return errors.New("a cron tick ran twice")
	case s.leaderOverlaps.Load() > 0:
		return errors.New("two leaders at once")
	case s.onceRuns.Load() != 1:
		return fmt.Errorf("the exactly-once job ran %d times", s.onceRuns.Load())
	case maxIn > 1:
		return errors.New("two requests for one account at once")
	}
	return nil
}
