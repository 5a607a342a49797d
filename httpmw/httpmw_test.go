package httpmw_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/httpmw"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func newLocker(t *testing.T, s *memlock.Store) lock.Locker {
	t.Helper()
	l, err := s.NewLocker(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// inflight counts concurrent requests per resource and remembers the
// highest count seen.
type inflight struct {
	mu  sync.Mutex
	now map[string]int
	max map[string]int
}

func newInflight() *inflight { return &inflight{now: map[string]int{}, max: map[string]int{}} }

func (f *inflight) enter(k string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now[k]++
	f.max[k] = max(f.max[k], f.now[k])
}

func (f *inflight) exit(k string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now[k]--
}

// server is a ServeMux with the middleware on POST /accounts/{id}; the
// handler runs hold(r) while it holds the resource.
func server(t *testing.T, l lock.Locker, opts httpmw.Options, hold func(r *http.Request)) *httptest.Server {
	t.Helper()
	if opts.PathValue == "" && opts.Header == "" && opts.Key == nil {
		opts.PathValue = "id"
	}
	mux := http.NewServeMux()
	mux.Handle("/accounts/{id}", httpmw.New(l, &opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hold(r)
		tok, _ := httpmw.TokenFrom(r.Context())
		fmt.Fprintf(w, "token %d", tok)
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, ctx context.Context, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestMiddleware_OneRequestPerResourceAcrossReplicas(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	f := newInflight()
	var ok, busy atomic.Int32
	opts := httpmw.Options{Wait: 10 * time.Second}
	work := func(r *http.Request) {
		id := r.PathValue("id")
		f.enter(id)
		time.Sleep(time.Millisecond) // the work
		f.exit(id)
	}
	replicas := []*httptest.Server{server(t, newLocker(t, store), opts, work), server(t, newLocker(t, store), opts, work)}
	var wg sync.WaitGroup
	for c := range 32 {
		wg.Go(func() {
			for i := range 10 {
				srv := replicas[(c+i)%2]
				resp, body := post(t, context.Background(), fmt.Sprintf("%s/accounts/%d", srv.URL, (c*7+i)%20))
				switch {
				case resp == nil:
					t.Error(body)
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
				case resp.StatusCode == http.StatusConflict:
					busy.Add(1)
				default:
					t.Errorf("status %d: %s", resp.StatusCode, body)
				}
			}
		})
	}
	wg.Wait()
	for k, n := range f.max {
		if n != 1 {
			t.Errorf("resource %s had %d requests in flight at once", k, n)
		}
	}
	t.Logf("2 replicas × 32 clients × 20 resources: %d ok, %d busy", ok.Load(), busy.Load())
	if ok.Load()+busy.Load() != 320 {
		t.Errorf("lost requests: %d answered of 320", ok.Load()+busy.Load())
	}
}

func TestMiddleware_DifferentResourcesRunInParallel(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	both := make(chan struct{})
	var arrived atomic.Int32
	srv := server(t, newLocker(t, store), httpmw.Options{}, func(r *http.Request) {
		if arrived.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both: // the other resource's request is inside too
		case <-time.After(10 * time.Second):
			t.Error("requests for different resources did not overlap")
		}
	})
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		wg.Go(func() {
			if resp, body := post(t, context.Background(), srv.URL+"/accounts/"+id); resp == nil || resp.StatusCode != 200 {
				t.Errorf("%s: %v %s", id, resp, body)
			}
		})
	}
	wg.Wait()
}

// blocker makes the handler wait inside the lock until released.
type blocker struct {
	inside  chan struct{}
	release chan struct{}
}

func newBlocker() *blocker { return &blocker{make(chan struct{}, 1), make(chan struct{})} }

func (b *blocker) hold(r *http.Request) {
	if r.Header.Get("X-Block") == "" {
		return
	}
	b.inside <- struct{}{}
	<-b.release
}

func postBlocking(url string) chan *http.Response {
	out := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		req.Header.Set("X-Block", "1")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		out <- resp
	}()
	return out
}

func TestMiddleware_BusyResourceGets409WithRetryAfter(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	b := newBlocker()
	srv := server(t, newLocker(t, store), httpmw.Options{RetryAfter: 1500 * time.Millisecond}, b.hold)
	first := postBlocking(srv.URL + "/accounts/1")
	<-b.inside
	resp, _ := post(t, context.Background(), srv.URL+"/accounts/1")
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("busy: status %d, Retry-After %q; want 409, \"2\"", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(b.release)
	if r := <-first; r == nil || r.StatusCode != 200 {
		t.Errorf("first request: %v", r)
	}
}

func TestMiddleware_WaitingRequestRunsWhenFreed(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	b := newBlocker()
	srv := server(t, newLocker(t, store), httpmw.Options{Wait: 10 * time.Second}, b.hold)
	first := postBlocking(srv.URL + "/accounts/1")
	<-b.inside
	second := make(chan *http.Response, 1)
	go func() { r, _ := post(t, context.Background(), srv.URL+"/accounts/1"); second <- r }()
	time.Sleep(50 * time.Millisecond) // let it start waiting; correctness does not depend on it
	close(b.release)
	if r := <-first; r == nil || r.StatusCode != 200 {
		t.Errorf("first: %v", r)
	}
	if r := <-second; r == nil || r.StatusCode != 200 {
		t.Errorf("waiting request: %v, want 200 once freed", r)
	}
}

func TestMiddleware_PanicReleasesTheLock(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	l := newLocker(t, store)
	h := httpmw.New(l, &httpmw.Options{Header: "X-Account"})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("handler bug")
	}))
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("X-Account", "42")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	lk, err := l.Acquire(context.Background(), "http/42", time.Minute)
	if err != nil {
		t.Fatalf("lock left behind after a panic: %v", err)
	}
	lk.Release(context.Background())
}

func TestMiddleware_ClientGoneWhileWaitingLeavesNothingLocked(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	l := newLocker(t, store)
	b := newBlocker()
	srv := server(t, l, httpmw.Options{Wait: time.Hour}, b.hold)
	first := postBlocking(srv.URL + "/accounts/1")
	<-b.inside
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { post(t, ctx, srv.URL+"/accounts/1"); close(done) }()
	time.Sleep(50 * time.Millisecond) // let it start waiting
	cancel()
	<-done
	close(b.release)
	<-first
	// Both gone: the resource must be free.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lk, err := l.Acquire(context.Background(), "http/1", time.Minute)
		if err == nil {
			lk.Release(context.Background())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resource still locked after both clients left: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestMiddleware_LostLockCancelsTheRequestContext(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	l := newLocker(t, store)
	var cause error
	h := httpmw.New(l, &httpmw.Options{Header: "X-Account", TTL: time.Second})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := store.Backend()
		h, _, _ := b.Inspect(r.Context(), "http/7")
		b.Release(r.Context(), "http/7", h.Owner) // the store loses it
		<-r.Context().Done()
		cause = context.Cause(r.Context())
	}))
	req := httptest.NewRequest(http.MethodPut, "/", nil)
	req.Header.Set("X-Account", "7")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !errors.Is(cause, lock.ErrLockNotHeld) {
		t.Errorf("request context cause = %v, want ErrLockNotHeld", cause)
	}
}

func TestMiddleware_Answers(t *testing.T) {
	store, _ := memlock.NewStore(nil)
	secret := errors.New("dial redis://:hunter2@10.0.0.1: connection refused")
	tests := []struct {
		name       string
		opts       httpmw.Options
		method     string
		header     string
		fail       bool
		wantStatus int
		wantHeader string
	}{
		{"SafeMethodPassesUnlocked", httpmw.Options{Header: "X-K"}, http.MethodGet, "", false, 200, ""},
		{"MissingKeyIs400", httpmw.Options{Header: "X-K"}, http.MethodPost, "", false, 400, ""},
		{"KeyTooLongIs400", httpmw.Options{Header: "X-K"}, http.MethodPost, strings.Repeat("k", lock.MaxKeyLength), false, 400, ""},
		{"KeyFuncErrorIs400", httpmw.Options{Key: func(*http.Request) (string, error) { return "", errors.New("no") }}, http.MethodPost, "", false, 400, ""},
		{"StoreFailureIs503", httpmw.Options{Header: "X-K"}, http.MethodPost, "a", true, 503, ""},
		{"TokenEchoed", httpmw.Options{Header: "X-K", TokenHeader: "Dlock-Token"}, http.MethodPost, "a", false, 200, "Dlock-Token"},
		{"ChosenMethodsOnly", httpmw.Options{Header: "X-K", Methods: []string{http.MethodDelete}}, http.MethodPost, "", false, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := locktest.NewFaulty(store.Backend())
			l, _ := lock.New(f, nil)
			defer l.Close()
			if tc.fail {
				f.FailNext(1, secret)
			}
			h := httpmw.New(l, &tc.opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			req := httptest.NewRequest(tc.method, "/", nil)
			if tc.header != "" {
				req.Header.Set("X-K", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Errorf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "10.0.0.1") {
				t.Errorf("the answer leaks internals: %q", rec.Body)
			}
			if tc.wantHeader != "" && rec.Header().Get(tc.wantHeader) == "" {
				t.Errorf("no %s header", tc.wantHeader)
			}
		})
	}
}

func TestNew_PanicsOnProgrammerError(t *testing.T) {
	l, _ := memlock.New(nil)
	defer l.Close()
	for name, tc := range map[string]struct {
		l    lock.Locker
		opts *httpmw.Options
	}{
		"NilLocker":    {nil, &httpmw.Options{Header: "X"}},
		"NilOptions":   {l, nil},
		"NoKeySource":  {l, &httpmw.Options{}},
		"TwoSources":   {l, &httpmw.Options{Header: "X", PathValue: "id"}},
		"NotAnError":   {l, &httpmw.Options{Header: "X", BusyStatus: 200}},
		"NegativeWait": {l, &httpmw.Options{Header: "X", Wait: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "httpmw:") {
					t.Errorf("recovered %v, want a panic starting with httpmw:", r)
				}
			}()
			httpmw.New(tc.l, tc.opts)
		})
	}
}
