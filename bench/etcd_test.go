package bench

// etcd: etcdlock against etcd's own concurrency.Mutex (with a session
// reused across locks, and with a session per lock, which is what a
// per-lock TTL costs with it), and against the raw protocol floor: one
// put-if-absent transaction and one delete on a lease granted beforehand.
//
//	go test -run '^$' -bench Etcd -benchmem
//
// BenchmarkEtcdInterleaved runs one cycle of each contender per iteration,
// in rotating order, so that the loopback's swings hit all of them alike,
// and reports each one's ns per cycle and etcdlock's ratios to the others.

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

// etcdTTL is the TTL of every contender's lock (whole seconds for etcd).
const etcdTTL = 10 * time.Second

func etcdClient(b *testing.B) *clientv3.Client {
	b.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(testenv.URL(b, testenv.Etcd), ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

func etcdContenders(b *testing.B) []contender {
	b.Helper()
	ctx := context.Background()
	c := etcdClient(b)

	locker, err := etcdlock.New(c, &etcdlock.Options{KeyPrefix: "/dlock-bench/etcdlock/"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = locker.Close() })

	session, err := concurrency.NewSession(c, concurrency.WithTTL(int(etcdTTL/time.Second)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = session.Close() })

	// The floor's lease outlives the run: it is granted once, as a
	// reused session's would be, and never refreshed.
	floorLease, err := c.Grant(ctx, 3600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = c.Revoke(context.Background(), floorLease.ID) })

	return []contender{
		{"etcdlock", func(ctx context.Context, key string) error {
			lk, err := locker.Acquire(ctx, key, etcdTTL)
			if err != nil {
				return err
			}
			return lk.Release(ctx)
		}},
		{"mutex-reused-session", func(ctx context.Context, key string) error {
			m := concurrency.NewMutex(session, "/dlock-bench/mutex-reused/"+key)
			if err := m.Lock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		}},
		{"mutex-session-per-lock", func(ctx context.Context, key string) error {
			s, err := concurrency.NewSession(c, concurrency.WithTTL(int(etcdTTL/time.Second)))
			if err != nil {
				return err
			}
			m := concurrency.NewMutex(s, "/dlock-bench/mutex-per-lock/"+key)
			if err := m.Lock(ctx); err != nil {
				_ = s.Close()
				return err
			}
			if err := m.Unlock(ctx); err != nil {
				_ = s.Close()
				return err
			}
			return s.Close() // revokes the lease
		}},
		{"raw-floor", func(ctx context.Context, key string) error {
			k := "/dlock-bench/raw/" + key
			resp, err := c.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
				Then(clientv3.OpPut(k, "owner", clientv3.WithLease(floorLease.ID))).
				Commit()
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				return lock.ErrLockNotAcquired
			}
			_, err = c.Delete(ctx, k)
			return err
		}},
	}
}

// BenchmarkEtcd measures each contender on its own (for -benchmem).
func BenchmarkEtcd(b *testing.B) { benchEach(b, etcdContenders(b)) }

// BenchmarkEtcdInterleaved runs the contenders in one loop and reports
// ns per acquire+release cycle of each, and etcdlock's ratios.
func BenchmarkEtcdInterleaved(b *testing.B) { benchInterleaved(b, etcdContenders(b), false) }
