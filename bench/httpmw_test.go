package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/httpmw"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

// BenchmarkHTTPMiddleware measures what httpmw adds to a request: in every
// iteration it serves one request through the bare handler and one through
// the middleware (in alternating order), in process (no network between
// client and server, so the figure is the middleware's alone), and reports
// the medians and their difference. On Redis the middleware costs two round
// trips (acquire, release); the keepalive does not refresh within a request
// much shorter than TTL/3.
func BenchmarkHTTPMiddleware(b *testing.B) {
	stores := []struct {
		name   string
		locker func(b *testing.B) lock.Locker
	}{
		{"memlock", func(b *testing.B) lock.Locker {
			l, err := memlock.New(nil)
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
		{"redis", func(b *testing.B) lock.Locker {
			opt, err := redis.ParseURL(testenv.URL(b, testenv.Redis))
			if err != nil {
				b.Fatal(err)
			}
			c := redis.NewClient(opt)
			b.Cleanup(func() { c.Close() })
			l, err := redislock.New(c, nil)
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			l := st.locker(b)
			defer l.Close()
			wrapped := httpmw.New(l, &httpmw.Options{PathValue: "id", TTL: 30 * time.Second})(ok)
			mux := http.NewServeMux()
			mux.Handle("POST /bare/{id}", ok)
			mux.Handle("POST /locked/{id}", wrapped)
			serve := func(path string) time.Duration {
				req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, nil)
				rec := httptest.NewRecorder()
				start := time.Now()
				mux.ServeHTTP(rec, req)
				d := time.Since(start)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("%s: status %d", path, rec.Code)
				}
				return d
			}
			bare := make([]time.Duration, 0, b.N)
			locked := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if i%2 == 0 {
					bare = append(bare, serve("/bare/acct-1"))
					locked = append(locked, serve("/locked/acct-1"))
				} else {
					locked = append(locked, serve("/locked/acct-1"))
					bare = append(bare, serve("/bare/acct-1"))
				}
			}
			slices.Sort(bare)
			slices.Sort(locked)
			pb, pl := float64(bare[len(bare)/2].Nanoseconds()), float64(locked[len(locked)/2].Nanoseconds())
			b.ReportMetric(pb, "bare-p50-ns")
			b.ReportMetric(pl, "locked-p50-ns")
			b.ReportMetric(pl-pb, "added-ns")
			b.ReportMetric(0, "ns/op")
		})
	}
}
