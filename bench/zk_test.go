package bench

// ZooKeeper: zklock against the raw protocol floor on the same
// go-zookeeper client (create an ephemeral node, delete it: two round
// trips), against the same transactions zklock sends written by hand (a
// multi of create + marker + setData, then a multi of two deletes: what
// dlock's layer costs on top of its protocol), and against go-zookeeper's
// own lock recipe (an ephemeral sequential node in a queue, Curator's
// shape: create, list the children, then delete).
//
//	go test -run '^$' -bench ZooKeeper -benchmem
//
// BenchmarkZooKeeperInterleaved runs one cycle of each contender per
// iteration, in rotating order, on one key per contender (OneKey) and on a
// new key every cycle (DistinctKeys), and reports each contender's ns per
// cycle and zklock's ratios to the others.

import (
	"context"
	"errors"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/internal/testenv"
)

// zkTTL is zklock's TTL: the lock lives on a session of at least this.
const zkTTL = 10 * time.Second

const zkBenchRoot = "/dlock-bench"

func zkServers(b *testing.B) []string {
	b.Helper()
	return strings.Split(testenv.URL(b, testenv.ZooKeeper), ",")
}

func zkConn(b *testing.B) *zk.Conn {
	b.Helper()
	c, _, err := zk.Connect(zkServers(b), zkTTL, zk.WithLogger(log.New(nopWriter{}, "", 0)), zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// zkMkdirs creates the persistent nodes of path, ignoring those that exist.
func zkMkdirs(b *testing.B, c *zk.Conn, path string) {
	b.Helper()
	for i := 1; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			if _, err := c.Create(path[:i], nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
				b.Fatal(err)
			}
		}
	}
}

// zkName turns a benchmark key into one node name.
func zkName(key string) string { return strings.ReplaceAll(key, "/", "_") }

func zkContenders(b *testing.B) []contender {
	b.Helper()
	locker, err := zklock.New(zkServers(b), &zklock.Options{Root: zkBenchRoot + "/zklock"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = locker.Close() })

	c := zkConn(b)
	acl := zk.WorldACL(zk.PermAll)
	zkMkdirs(b, c, zkBenchRoot+"/raw")
	zkMkdirs(b, c, zkBenchRoot+"/multi/l")
	zkMkdirs(b, c, zkBenchRoot+"/multi/o")
	zkMkdirs(b, c, zkBenchRoot+"/recipe")
	owner := []byte("0123456789abcdef0123456789abcdef")

	return []contender{
		{"zklock", func(ctx context.Context, key string) error {
			lk, err := locker.Acquire(ctx, key, zkTTL)
			if err != nil {
				return err
			}
			return lk.Release(ctx)
		}},
		{"raw-floor", func(_ context.Context, key string) error {
			p := zkBenchRoot + "/raw/" + zkName(key)
			if _, err := c.Create(p, owner, zk.FlagEphemeral, acl); err != nil {
				return err
			}
			return c.Delete(p, -1)
		}},
		{"raw-same-ops", func(_ context.Context, key string) error {
			p := zkBenchRoot + "/multi/l/" + zkName(key)
			m := zkBenchRoot + "/multi/o/" + zkName(key) + "@owner"
			_, err := c.Multi(
				&zk.CreateRequest{Path: p, Data: owner, Acl: acl, Flags: zk.FlagEphemeral},
				&zk.CreateRequest{Path: m, Acl: acl, Flags: zk.FlagEphemeral},
				&zk.SetDataRequest{Path: p, Data: owner, Version: 0},
			)
			if err != nil {
				return err
			}
			_, err = c.Multi(&zk.DeleteRequest{Path: m, Version: -1}, &zk.DeleteRequest{Path: p, Version: -1})
			return err
		}},
		{"zk-lock-recipe", func(_ context.Context, key string) error {
			l := zk.NewLock(c, zkBenchRoot+"/recipe/"+zkName(key), acl)
			if err := l.Lock(); err != nil {
				return err
			}
			return l.Unlock()
		}},
	}
}

// BenchmarkZooKeeper measures each contender on its own (for -benchmem).
func BenchmarkZooKeeper(b *testing.B) { benchEach(b, zkContenders(b)) }

// BenchmarkZooKeeperInterleaved runs the contenders in one loop and reports
// ns per acquire+release cycle of each, and zklock's ratios, on one key per
// contender and on a new key every cycle.
func BenchmarkZooKeeperInterleaved(b *testing.B) {
	b.Run("OneKey", func(b *testing.B) { benchInterleaved(b, zkContenders(b), false) })
	b.Run("DistinctKeys", func(b *testing.B) { benchInterleaved(b, zkContenders(b), true) })
}
