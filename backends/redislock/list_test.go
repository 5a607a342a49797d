package redislock_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/lock"
)

func TestList_ReportsTheHeldKeysUnderThePrefix(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(t *testing.T) redislock.Client
	}{
		{"single", func(t *testing.T) redislock.Client { return singleClient(t) }},
		{"cluster", func(t *testing.T) redislock.Client { return clusterClient(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, err := redislock.New(tc.client(t), &redislock.Options{Lock: lock.Options{Identity: "host-a/1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			base := randomKey(t)
			pfx := base + "/jobs*?[x]\\}/" // glob characters and escaped bytes in the prefix
			want := map[string]uint64{}
			var held []lock.Lock
			for i, k := range []string{pfx + "a", pfx + "b}\\x5c\x00", pfx + "released", base + "/other"} {
				lk, err := l.Acquire(ctx, k, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, lk)
				if i < 2 {
					want[k] = lk.Token()
				}
			}
			defer func() {
				for _, lk := range held {
					lk.Release(ctx)
				}
			}()
			if err := held[2].Release(ctx); err != nil {
				t.Fatal(err)
			}

			got := map[string]lock.Holder{}
			err = l.(lock.Lister).List(ctx, pfx, func(k string, h lock.Holder) bool {
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
				t.Fatalf("List = %v, want the keys of %v", got, want)
			}
			for k, tok := range want {
				h := got[k]
				if h.Token != tok || h.Identity != "host-a/1" || h.TTL <= 0 || h.TTL > time.Minute {
					t.Errorf("List[%q] = %+v, want token %d, identity host-a/1, 0 < TTL ≤ 1m", k, h, tok)
				}
			}
			n := 0
			if err := l.(lock.Lister).List(ctx, base, func(string, lock.Holder) bool { n++; return false }); err != nil || n != 1 {
				t.Errorf("List stopping at once: %d calls, %v", n, err)
			}
		})
	}
}
