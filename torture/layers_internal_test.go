package torture

import (
	"testing"
	"time"
)

func TestCountGoroutines(t *testing.T) {
	dump := `goroutine 1 [running]:
main.main()
	/x/main.go:1

goroutine 7 [select]:
github.com/dlockgo/dlock/lock.(*keeper).run(0x1)
	/x/lock/hold.go:130
github.com/dlockgo/dlock/backends/pglock.(*Backend).Refresh(0x1)
	/x/pglock.go:1
created by github.com/dlockgo/dlock/lock.Hold in goroutine 3

goroutine 9 [select]:
go.etcd.io/etcd/client/v3.(*watchGRPCStream).run(0x1)
	/x/watch.go:553
created by go.etcd.io/etcd/client/v3.(*watcher).newWatcherGRPCStream in goroutine 20
	/x/watch.go:299

goroutine 10 [select]:
context.(*cancelCtx).propagateCancel.func2()
	/x/context.go:523
created by context.(*cancelCtx).propagateCancel in goroutine 20
	/x/context.go:522

goroutine 11 [select]:
context.(*cancelCtx).propagateCancel.func2()
	/x/context.go:523
created by context.(*cancelCtx).propagateCancel in goroutine 21
	/x/context.go:522

goroutine 12 [select]:
github.com/dlockgo/dlock/backends/pglock.(*session).watch(0x1)
	/x/session.go:1
created by github.com/dlockgo/dlock/backends/pglock.(*session).arm in goroutine 5
`
	total, library, client := countGoroutines(dump)
	if total != 6 || library != 1 || client != 3 {
		t.Errorf("countGoroutines = %d, %d, %d; want 6 in all, 1 of the library (a Hold), 3 of the store's client", total, library, client)
	}
}

func TestGoroutinesLeaked(t *testing.T) {
	base := Goroutines{Total: 11, Client: 5}
	for _, tc := range []struct {
		g    Goroutines
		want bool
	}{
		{Goroutines{Total: 11, Client: 5}, false},
		{Goroutines{Total: 15, Client: 9}, false}, // the client kept a stream open
		{Goroutines{Total: 12, Client: 5}, true},
		{Goroutines{Total: 11, Library: 1, Client: 4}, true},
	} {
		if got := tc.g.Leaked(base); got != tc.want {
			t.Errorf("%+v.Leaked(%+v) = %v, want %v", tc.g, base, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := Percentile(ds, 0.5); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := Percentile(ds, 0.99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := Percentile(nil, 0.99); p != 0 {
		t.Errorf("p99 of none = %v", p)
	}
}
