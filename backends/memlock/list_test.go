package memlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
)

func TestList_ReportsTheLiveKeysUnderThePrefix(t *testing.T) {
	ctx := context.Background()
	s, err := memlock.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.NewLocker(&lock.Options{Identity: "host-a/1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[string]uint64{}
	for _, k := range []string{"jobs/a", "jobs/b\x00}"} {
		lk, err := l.Acquire(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = lk.Token()
	}
	for _, k := range []string{"other", "jobs/released"} {
		lk, err := l.Acquire(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if k == "jobs/released" {
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A stall of 1ms makes the grant late (refused, ErrLockNotHeld): the
	// lock is expired either way, which is what this case wants.
	if _, err := l.Acquire(ctx, "jobs/expired", time.Millisecond); err != nil && !errors.Is(err, lock.ErrLockNotHeld) {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) { // poll until the 1ms lock has expired
		if h, ok, _ := l.(lock.Inspector).Inspect(ctx, "jobs/expired"); !ok {
			break
		} else if h.TTL < 0 {
			t.Fatalf("negative TTL %v", h.TTL)
		}
	}

	got := map[string]lock.Holder{}
	err = l.(lock.Lister).List(ctx, "jobs/", func(k string, h lock.Holder) bool {
		got[k] = h
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List = %v, want the keys of %v", got, want)
	}
	for k, tok := range want {
		h := got[k]
		if h.Token != tok || h.Identity != "host-a/1" || h.TTL <= 0 || h.TTL > time.Minute {
			t.Errorf("List[%q] = %+v, want token %d, identity host-a/1, 0 < TTL ≤ 1m", k, h, tok)
		}
	}

	n := 0
	if err := l.(lock.Lister).List(ctx, "", func(string, lock.Holder) bool { n++; return false }); err != nil || n != 1 {
		t.Errorf("List stopping at once: %d calls, %v", n, err)
	}
}
