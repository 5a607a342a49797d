// Package storetest opens the real stores that scripts/services.sh starts,
// for the integration tests of the layers: each store as a factory of
// independent clients, as separate processes would be.
package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/once"
)

// Store is one real store.
type Store struct {
	// Name names the store in test names: redis, redis-cluster, postgres,
	// postgres-enforced, etcd, zk, dynamodb.
	Name string
	// MinTTL is the shortest TTL the store honours.
	MinTTL time.Duration
	// NativeTTL is false for stores whose TTL is advisory.
	NativeTTL bool
	// NewBackend opens a new client and a Backend on it; both are closed
	// when t ends (the Backend by whoever owns it: lock.New's Locker).
	NewBackend func(t testing.TB) driver.Backend
	// Records opens a new client and the store's once.Store on it.
	Records func(t testing.TB) once.Store
}

// NewLocker returns a Locker on a new client of s, closed when t ends.
func (s Store) NewLocker(t testing.TB, opts *lock.Options) lock.Locker {
	t.Helper()
	l, err := lock.New(s.NewBackend(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Real returns every real store whose URL is set; under CI a missing one
// fails the test (see testenv.URL).
func Real(t testing.TB) []Store {
	t.Helper()
	return []Store{Redis(t), RedisCluster(t), Postgres(t, false), Postgres(t, true), Etcd(t), ZooKeeper(t), DynamoDB(t)}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Redis is the single redis-server.
func Redis(t testing.TB) Store {
	url := testenv.URL(t, testenv.Redis)
	client := func(t testing.TB) redis.UniversalClient {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		return c
	}
	return redisStore("redis", client)
}

// RedisCluster is the 3-master Redis Cluster.
func RedisCluster(t testing.TB) Store {
	url := testenv.URL(t, testenv.RedisCluster)
	addrs := strings.Split(strings.TrimPrefix(url, "redis://"), ",")
	client := func(t testing.TB) redis.UniversalClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { c.Close() })
		return c
	}
	return redisStore("redis-cluster", client)
}

func redisStore(name string, client func(testing.TB) redis.UniversalClient) Store {
	return Store{
		Name: name, MinTTL: time.Millisecond, NativeTTL: true,
		NewBackend: func(t testing.TB) driver.Backend {
			b, err := redislock.NewBackend(client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Records: func(t testing.TB) once.Store {
			r, err := redislock.NewRecords(client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
	}
}

// Postgres is the PostgreSQL server, in advisory or server-enforced TTL
// mode.
func Postgres(t testing.TB, enforce bool) Store {
	url := testenv.URL(t, testenv.Postgres)
	pool := func(t testing.TB) *pgxpool.Pool {
		p, err := pgxpool.New(ctx(t), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	name := "postgres"
	if enforce {
		name = "postgres-enforced"
	}
	return Store{
		Name: name, MinTTL: time.Second, NativeTTL: enforce,
		NewBackend: func(t testing.TB) driver.Backend {
			b, err := pglock.NewBackend(ctx(t), pool(t), &pglock.Options{EnforceTTL: enforce})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Records: func(t testing.TB) once.Store {
			r, err := pglock.NewRecords(ctx(t), pool(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
	}
}

// Etcd is the single etcd member.
func Etcd(t testing.TB) Store {
	url := testenv.URL(t, testenv.Etcd)
	client := func(t testing.TB) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(url, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return Store{
		Name: "etcd", MinTTL: 2 * time.Second, NativeTTL: true,
		NewBackend: func(t testing.TB) driver.Backend {
			b, err := etcdlock.NewBackend(client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Records: func(t testing.TB) once.Store {
			r, err := etcdlock.NewRecords(client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
	}
}

// DynamoDB is the dynalite of scripts/services.sh, opened as package
// backends opens a dynamodb:// URL, in a table of its own.
func DynamoDB(t testing.TB) Store {
	u := testenv.URL(t, testenv.DynamoDB)
	host := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	cfg, err := backends.ParseURL("dynamodb://" + host + "/dlock_storetest?tls=false&region=us-east-1&create_table=true")
	if err != nil {
		t.Fatal(err)
	}
	return Store{
		Name: "dynamodb", MinTTL: time.Millisecond, NativeTTL: true,
		NewBackend: func(t testing.TB) driver.Backend {
			b, err := backends.OpenBackend(ctx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Records: func(t testing.TB) once.Store {
			r, err := backends.OpenRecords(ctx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
}

// ZooKeeper is the standalone ZooKeeper of scripts/services.sh, with
// sessions of 1 s to 60 s (what its configuration grants) under a root of
// its own.
func ZooKeeper(t testing.TB) Store {
	servers := strings.Split(testenv.URL(t, testenv.ZooKeeper), ",")
	opts := &zklock.Options{Root: "/dlock-storetest", SessionTimeout: time.Second, MaxSessionTimeout: time.Minute}
	return Store{
		Name: "zk", MinTTL: time.Second, NativeTTL: true,
		NewBackend: func(t testing.TB) driver.Backend {
			b, err := zklock.NewBackend(servers, opts)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Records: func(t testing.TB) once.Store {
			r, err := zklock.NewRecords(servers, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
}
