package etcdlock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

func TestList_ReportsTheHeldKeysUnderThePrefixAcrossPages(t *testing.T) {
	c := newClient(t, testenv.Etcd, nil)
	ctx := ctxT(t)
	store := "/dlock-test-list/" + randomKey(t) + "/"
	l, err := etcdlock.New(c, &etcdlock.Options{KeyPrefix: store, Lock: lock.Options{Identity: "host-a/1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[string]uint64{}
	var held []lock.Lock
	defer func() {
		for _, lk := range held {
			lk.Release(ctx)
		}
	}()
	for i := range 300 { // more than a page
		k := fmt.Sprintf("jobs/%03d", i)
		lk, err := l.Acquire(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, lk)
		want[k] = lk.Token()
	}
	for _, k := range []string{"jobs-not/x", "jobs/released"} {
		lk, err := l.Acquire(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, lk)
		if k == "jobs/released" {
			if err := lk.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A key under the prefix that no Locker wrote is skipped.
	if _, err := c.Put(ctx, store+"jobs/foreign", "not an owner"); err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx, store+"jobs/foreign")

	got := map[string]lock.Holder{}
	err = l.(lock.Lister).List(ctx, "jobs/", func(k string, h lock.Holder) bool {
		if _, dup := got[k]; dup {
			t.Errorf("List reported %q twice", k)
		}
		got[k] = h
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List reported %d keys, want %d", len(got), len(want))
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
