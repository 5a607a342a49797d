package backends_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

// TestOpenURL_ZooKeeper opens zk://, takes a lock, and records a
// completion through OpenRecords.
func TestOpenURL_ZooKeeper(t *testing.T) {
	url := "zk://" + testenv.URL(t, testenv.ZooKeeper) + "/dlock-backends-test?identity=t&session_timeout=1s&max_session_timeout=60s"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := backends.OpenURL(ctx, url)
	if err != nil {
		t.Fatalf("OpenURL: %v", err)
	}
	defer l.Close()
	key := "backends-test/zk/" + time.Now().Format(time.RFC3339Nano)
	lk, err := l.Acquire(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if h, ok, err := l.(lock.Inspector).Inspect(ctx, key); err != nil || !ok || h.Identity != "t" || h.Token != lk.Token() {
		t.Errorf("Inspect = %+v, %v, %v; want identity t, token %d", h, ok, err, lk.Token())
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	recordOnce(ctx, t, url, key, lk.Token())
}

func TestOpenURL_ZooKeeperUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := backends.OpenURL(ctx, "zk://127.0.0.1:1")
	if err == nil {
		l.Close()
		t.Fatal("OpenURL of a closed port succeeded")
	}
	if errors.Is(err, lock.ErrLockNotAcquired) {
		t.Errorf("a dead store reported as contention: %v", err)
	}
	t.Logf("%v", err)
}
