package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/cron"
	"github.com/dlockgo/dlock/httpmw"
	"github.com/dlockgo/dlock/leader"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/retry"
)

// LayerEnv is the environment variable that turns the test binary into a
// layer process — a leader candidate, a cron replica, a once worker or an
// HTTP server replica; its value is the JSON of a [LayerConfig].
const LayerEnv = "DLOCK_TORTURE_LAYER"

// Roles of layer processes, as in [LayerConfig].Role.
const (
	RoleLeader = "leader"
	RoleCron   = "cron"
	RoleOnce   = "once"
	RoleHTTP   = "http"
)

// LayerConfig is what a layer process needs, passed as JSON in [LayerEnv].
type LayerConfig struct {
	Role     string        // RoleLeader, RoleCron, RoleOnce or RoleHTTP
	Name     string        // the process's name in the logs (and its lock identity)
	URL      string        // lock store URL (leader: through the process's own proxy)
	Register string        // URL of the store of the fenced register (and of once's records)
	Key      string        // leader: election key; cron and http: lock key prefix; once: KeyPrefix
	Keys     []string      // once: job keys, in this worker's order
	TTL      time.Duration // lock TTL (cron: MaxHold)
	Work     time.Duration // leader: time between writes; cron, once: maximum job time
	Deadline time.Time     // cron: when the scheduler stops
	Offset   time.Duration // cron: this replica's clock skew
	Spec     string        // cron: the job's schedule
	MinHold  time.Duration // cron: the job's MinHold (0: the default)
	Seed     uint64
}

// Lines a layer process writes to its standard output, besides the
// client events of [Format] (enter, write, lost, exit):
//
//	ready  CLIENT T               (set up; the scheduler or server runs)
//	addr   CLIENT HOST:PORT       (http: where the replica listens)
//	result KEY CLIENT TOKEN STATE (once: what once.Do returned: ran,
//	                               already, busy, fenced or error)
type layerOut struct {
	name string
	mu   sync.Mutex
	w    io.Writer
}

func (o *layerOut) line(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	io.WriteString(o.w, s+"\n") // one write(2) per line: a kill -9 loses at most the line in flight
}

func (o *layerOut) emit(ev Event) {
	ev.Client = o.name
	o.line(Format(ev))
}

// LayerMain runs a layer process from its environment and returns the exit
// code. Call it from TestMain when [LayerEnv] is set. SIGTERM stops it
// cleanly.
func LayerMain() int {
	var c LayerConfig
	if err := json.Unmarshal([]byte(os.Getenv(LayerEnv)), &c); err != nil {
		fmt.Fprintln(os.Stderr, "torture layer:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	out := &layerOut{name: c.Name, w: os.Stdout}
	var err error
	switch c.Role {
	case RoleLeader:
		err = runLeader(ctx, c, out)
	case RoleCron:
		err = runCron(ctx, c, out)
	case RoleOnce:
		err = runOnce(ctx, c, out)
	case RoleHTTP:
		err = runHTTP(ctx, c, out)
	default:
		err = fmt.Errorf("unknown role %q", c.Role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "torture layer", c.Name+":", err)
		return 1
	}
	return 0
}

// openLocker opens the lock store with the process's name as identity.
func openLocker(ctx context.Context, rawURL, name string) (lock.Locker, error) {
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return backends.OpenURL(octx, rawURL+sep+"identity="+name)
}

func openRegister(ctx context.Context, rawURL string) (Register, error) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return OpenRegister(octx, rawURL)
}

// fencedWrite offers token for key to the register and logs the outcome
// to out (see writeFenced).
func fencedWrite(held context.Context, out *layerOut, reg Register, key string, token uint64) {
	writeFenced(held, reg, key, token, out.emit)
}

// lossWatch records when ctx ends; lost logs it if ctx ended because its
// lock was lost.
type lossWatch struct {
	at   atomic.Int64
	stop func() bool
}

func watchLoss(ctx context.Context) *lossWatch {
	w := &lossWatch{}
	w.stop = context.AfterFunc(ctx, func() { w.at.Store(now()) })
	return w
}

// end logs lost (when ctx's cause is a lost lock) and exit.
func (w *lossWatch) end(ctx context.Context, out *layerOut, key string, token uint64) {
	if errors.Is(context.Cause(ctx), lock.ErrLockNotHeld) {
		for w.at.Load() == 0 { // AfterFunc's goroutine is starting
			time.Sleep(50 * time.Microsecond)
		}
		out.emit(Event{Op: "lost", Key: key, Token: token, T: w.at.Load()})
	}
	out.emit(Event{Op: "exit", Key: key, Token: token, T: now()})
	w.stop()
}

// runLeader campaigns on c.Key; while leading it writes its term through
// the fenced register every c.Work. SIGUSR1 makes it resign.
func runLeader(ctx context.Context, c LayerConfig, out *layerOut) error {
	locker, err := openLocker(ctx, c.URL, c.Name)
	if err != nil {
		return err
	}
	defer locker.Close()
	reg, err := openRegister(ctx, c.Register)
	if err != nil {
		return err
	}
	defer reg.Close()
	e, err := leader.New(locker, c.Key, &leader.Options{Identity: c.Name, TTL: c.TTL})
	if err != nil {
		return err
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				e.Resign(ctx)
			}
		}
	}()
	var campaign atomic.Int64 // when this replica (last) started campaigning
	campaign.Store(now())
	out.line(fmt.Sprintf("ready %s %d", c.Name, now()))
	err = e.Run(ctx, func(lctx context.Context) error {
		term, _ := leader.TermFrom(lctx)
		w := watchLoss(lctx)
		out.emit(Event{Op: "enter", Key: c.Key, Token: term, T0: campaign.Load(), T: now()})
		t := time.NewTicker(c.Work)
		for lctx.Err() == nil {
			fencedWrite(lctx, out, reg, c.Key, term)
			select {
			case <-lctx.Done():
			case <-t.C:
			}
		}
		t.Stop()
		w.end(lctx, out, c.Key, term)
		campaign.Store(now())
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// runCron runs one replica of a scheduler with a job on c.Spec and a clock
// skewed by c.Offset, until c.Deadline. Each run logs enter and exit with
// the tick (its scheduled time, in Unix ns) as key and T0, and the lock's
// token.
func runCron(ctx context.Context, c LayerConfig, out *layerOut) error {
	locker, err := openLocker(ctx, c.URL, c.Name)
	if err != nil {
		return err
	}
	defer locker.Close()
	s, err := cron.New(locker, &cron.Options{KeyPrefix: c.Key, Now: func() time.Time { return time.Now().Add(c.Offset) }})
	if err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(c.Seed, 1))
	var mu sync.Mutex
	err = s.AddJob("job", c.Spec, func(ctx context.Context) error {
		tick, _ := cron.TickFrom(ctx)
		token, _ := lock.TokenFrom(ctx)
		key := "tick-" + strconv.FormatInt(tick.UnixNano(), 10)
		w := watchLoss(ctx)
		out.emit(Event{Op: "enter", Key: key, Token: token, T0: tick.UnixNano(), T: now()})
		mu.Lock()
		work := time.Duration(rnd.Int64N(int64(c.Work) + 1))
		mu.Unlock()
		t := time.NewTimer(work)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		w.end(ctx, out, key, token)
		return nil
	}, &cron.JobOptions{MinHold: c.MinHold, MaxHold: c.TTL})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithDeadline(ctx, c.Deadline)
	defer cancel()
	out.line(fmt.Sprintf("ready %s %d", c.Name, now()))
	s.Run(rctx)
	return nil
}

// runOnce calls once.Do for each of c.Keys in turn. The job logs enter,
// works up to c.Work, writes its token through the fenced register, and
// logs exit; each call's outcome is logged as a result line.
func runOnce(ctx context.Context, c LayerConfig, out *layerOut) error {
	locker, err := openLocker(ctx, c.URL, c.Name)
	if err != nil {
		return err
	}
	defer locker.Close()
	reg, err := openRegister(ctx, c.Register)
	if err != nil {
		return err
	}
	defer reg.Close()
	cfg, err := backends.ParseURL(c.URL)
	if err != nil {
		return err
	}
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	records, err := backends.OpenRecords(octx, cfg)
	ocancel()
	if err != nil {
		return err
	}
	defer records.Close()
	rnd := rand.New(rand.NewPCG(c.Seed, uint64(os.Getpid())))
	opts := &once.Options{TTL: c.TTL, KeyPrefix: c.Key,
		Retry: &retry.Options{InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond, RetryStoreErrors: true}}
	out.line(fmt.Sprintf("ready %s %d", c.Name, now()))
	errs := 0 // consecutive failed calls for the current key
	for i := 0; i < len(c.Keys); i++ {
		if ctx.Err() != nil {
			return nil
		}
		key := c.Keys[i]
		t0 := now()
		res, err := once.Do(ctx, locker, records, key, func(held context.Context, token uint64) error {
			w := watchLoss(held)
			out.emit(Event{Op: "enter", Key: key, Token: token, T0: t0, T: now()})
			t := time.NewTimer(time.Duration(rnd.Int64N(int64(c.Work) + 1)))
			select {
			case <-held.Done():
			case <-t.C:
			}
			t.Stop()
			fencedWrite(held, out, reg, key, token)
			w.end(held, out, key, token)
			return nil // complete even after a loss: the records' fence decides
		}, opts)
		state := "error"
		switch {
		case err == nil && res.State == once.Ran:
			state = "ran"
		case err == nil && res.State == once.AlreadyDone:
			state = "already"
		case err == nil && res.State == once.Busy:
			state = "busy"
		case errors.Is(err, once.ErrFencedOut):
			state = "fenced"
		default:
			fmt.Fprintln(os.Stderr, "once", key+":", err)
		}
		out.line(fmt.Sprintf("result %s %s %d %s", key, c.Name, res.Token, state))
		if state == "error" && errs < 3 {
			// A store failure: call again, as a caller would, a few times.
			errs++
			i--
			time.Sleep(time.Duration(errs) * 50 * time.Millisecond) // back-off before the retry
			continue
		}
		errs = 0
	}
	return nil
}

// HTTP request headers of the load generator.
const (
	headerWork  = "X-Torture-Work"  // how long the handler works (a Go duration)
	headerPanic = "X-Torture-Panic" // "1": the handler panics
)

// runHTTP serves POST /res/{id} behind httpmw (and a recovery middleware
// outside it), and GET /goroutines (the process's goroutine counts, see
// [countGoroutines]; ?stacks: their stacks), until
// SIGTERM. Each handler logs enter and exit with the resource id as key.
func runHTTP(ctx context.Context, c LayerConfig, out *layerOut) error {
	locker, err := openLocker(ctx, c.URL, c.Name)
	if err != nil {
		return err
	}
	defer locker.Close()
	serial := httpmw.New(locker, &httpmw.Options{PathValue: "id", KeyPrefix: c.Key, TTL: c.TTL, Wait: 5 * time.Second,
		Retry:  &retry.Options{InitialInterval: 2 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}) // store failures (503) go to the .err file
	work := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		token, _ := httpmw.TokenFrom(r.Context())
		lw := watchLoss(r.Context())
		out.emit(Event{Op: "enter", Key: id, Token: token, T0: now(), T: now()})
		defer lw.end(r.Context(), out, id, token) // also when the handler panics
		d, _ := time.ParseDuration(r.Header.Get(headerWork))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if r.Header.Get(headerPanic) == "1" {
			panic("torture: handler panics on purpose")
		}
		io.WriteString(w, "ok\n")
	})
	mux := http.NewServeMux()
	mux.Handle("POST /res/{id}", recoverer(serial(work)))
	mux.HandleFunc("GET /goroutines", func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 2)
		if r.URL.Query().Has("stacks") {
			io.WriteString(w, b.String())
			return
		}
		total, ours, client := countGoroutines(b.String())
		fmt.Fprintln(w, total, ours, client)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	out.line(fmt.Sprintf("addr %s %s", c.Name, ln.Addr()))
	out.line(fmt.Sprintf("ready %s %d", c.Name, now()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// recoverer answers 500 when the handler panics, as a service's recovery
// middleware would; it sits outside httpmw, so the lock is released before
// it runs.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// countGoroutines counts the goroutines of a dump (pprof's debug=2
// format): all of them; those running code of the library's per-request
// packages (lock, retry, httpmw: a handler, a Hold or a wait still going);
// and those of the store's client and driver (etcd, gRPC, go-redis, pgx,
// and the stores' packages under backends/, whose sessions and watchers
// live as long as the client), counting with them a context's propagation
// goroutine started by the goroutine that started one of theirs (etcd's
// watch streams).
func countGoroutines(dump string) (total, library, client int) {
	clientPkgs := []string{"go.etcd.io/", "google.golang.org/grpc", "github.com/redis/go-redis", "github.com/jackc/",
		"github.com/dlockgo/dlock/backends"}
	isClient := func(g string) bool {
		return slices.ContainsFunc(clientPkgs, func(p string) bool { return strings.Contains(g, p) })
	}
	var blocks []string
	clientParents := map[string]bool{} // goroutines that started a client goroutine
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") {
			continue
		}
		blocks = append(blocks, g)
		if _, parent, ok := strings.Cut(g, "\ncreated by "); ok && isClient(parent) {
			if _, m, ok := strings.Cut(parent, " in goroutine "); ok {
				clientParents[strings.Fields(m)[0]] = true
			}
		}
	}
	for _, g := range blocks {
		total++
		lib := false
		for _, p := range []string{"lock", "retry", "httpmw"} {
			lib = lib || strings.Contains(g, "github.com/dlockgo/dlock/"+p+".") || strings.Contains(g, "github.com/dlockgo/dlock/"+p+"/")
		}
		switch {
		case lib:
			library++
		case isClient(g):
			client++
		case strings.Contains(g, "context.(*cancelCtx).propagateCancel"):
			if _, m, ok := strings.Cut(g, " in goroutine "); ok && clientParents[strings.Fields(m)[0]] {
				client++
			}
		}
	}
	return total, library, client
}
