package pglock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// newPool opens a pool on url, closed when t ends.
func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// sharedPool opens a pool on the shared test server.
func sharedPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return newPool(t, testenv.URL(t, testenv.Postgres))
}

// newBackend opens a Backend on pool, closed when t ends.
func newBackend(t testing.TB, pool *pgxpool.Pool, opts *pglock.Options) *pglock.Backend {
	t.Helper()
	b, err := pglock.NewBackend(ctxFor(t), pool, opts)
	if err != nil {
		t.Fatalf("NewBackend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newLocker opens a Locker on pool, closed when t ends.
func newLocker(t testing.TB, pool *pgxpool.Pool, opts *pglock.Options) lock.Locker {
	t.Helper()
	l, err := pglock.New(ctxFor(t), pool, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 5ms until it holds or within has passed.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline, not synchronisation
	}
	return time.Since(start)
}

func TestNew_NilPool(t *testing.T) {
	if _, err := pglock.New(context.Background(), nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("New(nil pool) = %v, want ErrNilDatabaseClient", err)
	}
	if _, err := pglock.NewBackend(context.Background(), nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("NewBackend(nil pool) = %v, want ErrNilDatabaseClient", err)
	}
	if err := pglock.Migrate(context.Background(), nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("Migrate(nil pool) = %v, want ErrNilDatabaseClient", err)
	}
}

func TestNew_InvalidOptions(t *testing.T) {
	pool := sharedPool(t)
	for _, o := range []pglock.Options{
		{Sessions: -1},
		{HealthInterval: -time.Second},
		{OpTimeout: -time.Second},
	} {
		if l, err := pglock.New(ctxFor(t), pool, &o); err == nil {
			_ = l.Close()
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// The store's sessions are hijacked from the pool: a pool of one
// connection is enough, and stays usable.
func TestNew_PoolOfOneConnection(t *testing.T) {
	pool := newPool(t, testenv.URL(t, testenv.Postgres)+"&pool_max_conns=1")
	l := newLocker(t, pool, nil)
	for i := range 10 {
		lk, err := l.Acquire(ctxFor(t), fmt.Sprintf("%s/%d", t.Name(), i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release(ctxFor(t))
	}
	if _, err := pool.Exec(ctxFor(t), `SELECT 1`); err != nil {
		t.Errorf("the pool is not usable: %v", err)
	}
}

// Identities are any bytes; the sessions' application_name keeps what
// PostgreSQL accepts.
func TestNew_IdentityOfAnyBytes(t *testing.T) {
	pool := sharedPool(t)
	id := "wörker\x00\xff" + strings.Repeat("x", 200)
	l := newLocker(t, pool, &pglock.Options{Lock: lock.Options{Identity: id}})
	lk, err := l.Acquire(ctxFor(t), t.Name(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
}
