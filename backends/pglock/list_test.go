package pglock_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestList_ReportsTheRecordedHoldersUnderThePrefix(t *testing.T) {
	pool := sharedPool(t)
	for _, enforce := range []bool{false, true} {
		t.Run(fmt.Sprintf("EnforceTTL=%v", enforce), func(t *testing.T) {
			ctx := ctxFor(t)
			ns := "list-test-" + locktest.Key(t) // a namespace of its own: other tests' keys stay out
			opts := &pglock.Options{EnforceTTL: enforce, RecordHolders: true, Namespace: ns, Lock: lock.Options{Identity: "worker-7"}}
			l := newLocker(t, pool, opts)
			want := map[string]uint64{}
			var held []lock.Lock
			defer func() {
				for _, lk := range held {
					lk.Release(ctx)
				}
			}()
			for i, k := range []string{"jobs/a", "jobs/b\x00\xff", "jobs/released", "other"} {
				lk, err := l.Acquire(ctx, k, 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, lk)
				if i < 2 {
					want[k] = lk.Token()
				}
			}
			if err := held[2].Release(ctx); err != nil {
				t.Fatal(err)
			}
			// Another namespace's holder of the same key is not listed.
			otherNS := newLocker(t, pool, &pglock.Options{RecordHolders: true, Namespace: ns + "-other"})
			lk, err := otherNS.Acquire(ctx, "jobs/c", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, lk)

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
				if h.Token != tok || h.Identity != "worker-7" {
					t.Errorf("List[%q] = %+v, want token %d, identity worker-7", k, h, tok)
				}
				if enforce && (h.TTL <= 0 || h.TTL > 10*time.Second) || !enforce && h.TTL != 0 {
					t.Errorf("List[%q].TTL = %v (EnforceTTL=%v)", k, h.TTL, enforce)
				}
			}
			n := 0
			if err := l.(lock.Lister).List(ctx, "", func(string, lock.Holder) bool { n++; return false }); err != nil || n != 1 {
				t.Errorf("List stopping at once: %d calls, %v", n, err)
			}
		})
	}
}

func TestList_WithoutRecordsIsUnsupported(t *testing.T) {
	l := newLocker(t, sharedPool(t), nil)
	err := l.(lock.Lister).List(ctxFor(t), "", func(string, lock.Holder) bool { return true })
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("List without RecordHolders = %v, want ErrUnsupported", err)
	}
}
