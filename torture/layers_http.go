package torture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/dlockgo/dlock/lock"
)

// HTTPOptions configure [RunHTTP].
type HTTPOptions struct {
	LayerCommon
	Replicas   int           // server processes sharing the store
	Clients    int           // concurrent clients of the load generator
	Requests   int           // requests per client
	Resources  int           // distinct /res/{id}
	TTL        time.Duration // httpmw's lock TTL
	Work       time.Duration // handler time is uniform in [0, Work]
	CancelRate float64       // share of requests cancelled by their client at a random time
	PanicRate  float64       // share of handlers that panic
}

// HTTPResult is what [RunHTTP] saw.
type HTTPResult struct {
	// Report is [Check] on the handler runs (enter to exit, the resource
	// id as lock key), across the replicas.
	*Report
	Replicas, Requests int
	// Status counts answers by status code; Cancelled the requests their
	// client cancelled (whether or not the handler had started);
	// Panicked the requests sent to panic; Errors the other failed
	// requests.
	Status                      map[int]int
	Cancelled, Panicked, Errors int
	MaxInFlight                 int // most handlers running at once for one resource
	LeftLocked                  int // resources still locked once every handler returned
	// Goroutines of each replica after the load, and before it.
	Goroutines, GoroutineBaseline []Goroutines
}

// Goroutines counts a server process's goroutines.
type Goroutines struct {
	Total   int
	Library int // running code of packages lock, retry or httpmw
	Client  int // of the store's client and driver (etcd, gRPC, go-redis, pgx, backends/…)
}

// Leaked tells whether g has goroutines that b had not, beyond those of
// the store's client and driver (etcd's client may keep a watch stream
// open after its last watch ended; pglock starts a watcher per session it
// opens), or any running library code.
func (g Goroutines) Leaked(b Goroutines) bool {
	return g.Library > 0 || g.Total-g.Client > b.Total-b.Client
}

// RunHTTP runs o.Replicas HTTP server processes that serve POST /res/{id}
// behind httpmw on one store, and a load generator in this process: some
// clients cancel mid-request and some handlers panic (a recovery
// middleware outside httpmw answers 500). At the end no resource may stay
// locked and the servers' goroutines must be back to their count before
// the load.
func RunHTTP(ctx context.Context, o HTTPOptions) (*HTTPResult, error) {
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0xbf58476d1ce4e5b9))
	run := fmt.Sprintf("H%d", o.Seed%1_000_000)
	prefix := fmt.Sprintf("torture-http-%s-%x/", run, time.Now().UnixNano()&0xffffff)
	lp := newLayerProcs(&o.LayerCommon)
	defer lp.stopAll(10 * time.Second)
	var names []string
	for i := range o.Replicas {
		p, err := lp.spawn(LayerConfig{Role: RoleHTTP, Name: layerName(run+"s", i, 1), URL: o.URL, Key: prefix, TTL: o.TTL})
		if err != nil {
			return nil, err
		}
		names = append(names, p.cfg.Name)
	}
	if !lp.waitFor(60*time.Second, func() bool { return lp.readyAll(names) }) {
		return nil, errors.New("torture: http servers did not start")
	}
	var addrs []string
	lp.mu.Lock()
	for _, l := range lp.lines {
		if l.op == "addr" {
			addrs = append(addrs, "http://"+l.addr)
		}
	}
	lp.mu.Unlock()

	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	defer probe.CloseIdleConnections()
	goroutines := func(addr string) (g Goroutines, err error) {
		resp, err := probe.Get(addr + "/goroutines")
		if err != nil {
			return g, err
		}
		defer resp.Body.Close()
		_, err = fmt.Fscan(resp.Body, &g.Total, &g.Library, &g.Client)
		return g, err
	}
	res := &HTTPResult{Replicas: o.Replicas, Status: map[int]int{}}
	// Warm up: the store clients start their goroutines on first use.
	for _, a := range addrs {
		for id := range 3 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/res/%d", a, id), nil)
			resp, err := probe.Do(req)
			if err != nil {
				return nil, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for _, a := range addrs {
		n, err := goroutines(a)
		if err != nil {
			return nil, err
		}
		res.GoroutineBaseline = append(res.GoroutineBaseline, n)
	}

	tr := &http.Transport{MaxIdleConnsPerHost: o.Clients}
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range o.Clients {
		seed := rnd.Uint64()
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, 7))
			for range o.Requests {
				if ctx.Err() != nil {
					return
				}
				work := time.Duration(r.Int64N(int64(o.Work) + 1))
				rctx, cancel := context.WithCancel(ctx)
				cancels := r.Float64() < o.CancelRate
				if cancels {
					// Mid-request: while waiting for the lock or while the
					// handler works.
					time.AfterFunc(time.Duration(r.Int64N(int64(2*o.Work)+1)), cancel)
				}
				panics := r.Float64() < o.PanicRate
				req, _ := http.NewRequestWithContext(rctx, http.MethodPost,
					fmt.Sprintf("%s/res/%d", addrs[r.IntN(len(addrs))], r.IntN(o.Resources)), nil)
				req.Header.Set(headerWork, work.String())
				if panics {
					req.Header.Set(headerPanic, "1")
				}
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				cancelled := rctx.Err() != nil
				cancel()
				mu.Lock()
				res.Requests++
				switch {
				case cancelled && (err != nil || status != http.StatusOK):
					res.Cancelled++
				case err != nil:
					res.Errors++
				default:
					res.Status[status]++
				}
				if panics {
					res.Panicked++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()

	// Goroutines back to the baseline (which also means every handler
	// returned), polled with a deadline.
	for i, a := range addrs {
		var g Goroutines
		end := time.Now().Add(5 * time.Second)
		for {
			var err error
			if g, err = goroutines(a); err != nil {
				return nil, err
			}
			if !g.Leaked(res.GoroutineBaseline[i]) || time.Now().After(end) {
				break
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
		res.Goroutines = append(res.Goroutines, g)
		if g.Leaked(res.GoroutineBaseline[i]) {
			if resp, err := probe.Get(a + "/goroutines?stacks"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				path := filepath.Join(o.Dir, fmt.Sprintf("goroutines-%d.txt", i))
				os.WriteFile(path, b, 0o644)
				o.logf("replica %d: goroutines %+v after the load, %+v before; stacks in %s", i, g, res.GoroutineBaseline[i], path)
			}
		}
	}
	// No lock left behind: each resource can be taken at once.
	locker, err := openLocker(ctx, o.URL, run+"-checker")
	if err != nil {
		return nil, err
	}
	defer locker.Close()
	for id := range o.Resources {
		lk, err := locker.Acquire(ctx, prefix+strconv.Itoa(id), time.Second)
		if errors.Is(err, lock.ErrLockNotAcquired) {
			res.LeftLocked++
			continue
		}
		if err != nil {
			return nil, err
		}
		lk.Release(ctx)
	}

	lp.stopAll(10 * time.Second)
	res.Report = lp.check(time.Second)
	lp.mu.Lock()
	type edge struct {
		t     int64
		delta int
	}
	byKey := map[string][]edge{}
	for _, evs := range lp.events {
		for _, ev := range evs {
			switch ev.Op {
			case "enter":
				byKey[ev.Key] = append(byKey[ev.Key], edge{ev.T, 1})
			case "exit":
				byKey[ev.Key] = append(byKey[ev.Key], edge{ev.T, -1})
			}
		}
	}
	lp.mu.Unlock()
	for _, es := range byKey {
		// Exits first at equal times: a section that ends when another
		// starts does not overlap it.
		slices.SortFunc(es, func(a, b edge) int {
			if a.t != b.t {
				return int(a.t - b.t)
			}
			return a.delta - b.delta
		})
		n := 0
		for _, e := range es {
			n += e.delta
			res.MaxInFlight = max(res.MaxInFlight, n)
		}
	}
	return res, nil
}
