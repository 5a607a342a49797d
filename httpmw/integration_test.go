package httpmw_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlockgo/dlock/httpmw"
	"github.com/dlockgo/dlock/internal/storetest"
)

// TestIntegration_OneRequestPerResourceOnRealStores: two replicas (two
// servers, each with its own client of the store), 32 concurrent clients,
// 20 resources: never two requests for one resource at once, and every
// request answered 200 or 409.
func TestIntegration_OneRequestPerResourceOnRealStores(t *testing.T) {
	for _, s := range storetest.Real(t) {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			f := newInflight()
			opts := httpmw.Options{Wait: 20 * time.Second, TTL: max(s.MinTTL, 3*time.Second),
				KeyPrefix: fmt.Sprintf("it/http/%s/%d/", s.Name, time.Now().UnixNano())}
			work := func(r *http.Request) {
				id := r.PathValue("id")
				f.enter(id)
				time.Sleep(2 * time.Millisecond) // the work
				f.exit(id)
			}
			replicas := []string{server(t, s.NewLocker(t, nil), opts, work).URL, server(t, s.NewLocker(t, nil), opts, work).URL}
			var ok, busy atomic.Int32
			var wg sync.WaitGroup
			for c := range 32 {
				wg.Go(func() {
					for i := range 10 {
						resp, body := post(t, context.Background(), fmt.Sprintf("%s/accounts/%d", replicas[(c+i)%2], (c*7+i)%20))
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
			maxIn := 0
			for _, n := range f.max {
				maxIn = max(maxIn, n)
			}
			t.Logf("%s: 2 replicas × 32 clients × 20 resources: %d ok, %d busy, max in flight per resource %d", s.Name, ok.Load(), busy.Load(), maxIn)
			if maxIn != 1 {
				t.Errorf("max in flight per resource = %d, want 1", maxIn)
			}
			if ok.Load()+busy.Load() != 320 {
				t.Errorf("%d of 320 requests answered 200 or 409", ok.Load()+busy.Load())
			}
		})
	}
}
