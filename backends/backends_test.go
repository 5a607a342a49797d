package backends_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestOpen_NilConfig(t *testing.T) {
	if _, err := backends.Open(context.Background(), nil); !errors.Is(err, lock.ErrNilConfig) {
		t.Errorf("Open(nil) = %v, want ErrNilConfig", err)
	}
	if _, err := backends.OpenRecords(context.Background(), nil); !errors.Is(err, lock.ErrNilConfig) {
		t.Errorf("OpenRecords(nil) = %v, want ErrNilConfig", err)
	}
	if _, err := backends.Open(context.Background(), &backends.Config{Store: "zookeeper"}); !errors.Is(err, backends.ErrInvalidURL) {
		t.Errorf("unknown store: %v", err)
	}
}

// TestOpenURL_EveryStore opens each store by URL, takes a lock, and writes
// a completion record.
func TestOpenURL_EveryStore(t *testing.T) {
	urls := map[string]string{
		"mem":           "mem://?identity=t",
		"redis":         testenv.URL(t, testenv.Redis) + "?identity=t",
		"redis-cluster": testenv.URL(t, testenv.RedisCluster) + "?identity=t",
		"postgres":      testenv.URL(t, testenv.Postgres) + "&identity=t&dlock_record_holders=true",
		"etcd":          "etcd://" + testenv.URL(t, testenv.Etcd) + "?identity=t",
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := backends.OpenURL(ctx, url)
			if err != nil {
				t.Fatalf("OpenURL: %v", err)
			}
			defer func() {
				if err := l.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			key := "backends-test/" + name + "/" + time.Now().Format(time.RFC3339Nano)
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
			cfg, _ := backends.ParseURL(url)
			r, err := backends.OpenRecords(ctx, cfg)
			if err != nil {
				t.Fatalf("OpenRecords: %v", err)
			}
			defer r.Close()
			if done, _, err := r.Begin(ctx, key, 5, time.Minute); done || err != nil {
				t.Fatalf("Begin = %v, %v", done, err)
			}
			if ok, err := r.Complete(ctx, key, 5, time.Minute); !ok || err != nil {
				t.Fatalf("Complete = %v, %v", ok, err)
			}
			if done, by, err := r.Done(ctx, key); !done || by != 5 || err != nil {
				t.Errorf("Done = %v, %d, %v", done, by, err)
			}
		})
	}
}

// TestOpenURL_UnreachableStoreErrorHidesThePassword: nothing listens on
// port 1; the error says so within the deadline and never shows the
// password.
func TestOpenURL_UnreachableStoreErrorHidesThePassword(t *testing.T) {
	for _, url := range []string{
		"redis://:hunter2@127.0.0.1:1/0",
		"postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2",
		"etcd://u:hunter2@127.0.0.1:1?dial_timeout=1s",
		"dynamodb://AKID:hunter2@127.0.0.1:1/dlock?tls=false",
	} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := backends.OpenURL(ctx, url)
			if err == nil {
				l.Close()
				t.Fatal("OpenURL of a closed port succeeded")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
			if errors.Is(err, lock.ErrLockNotAcquired) {
				t.Errorf("a dead store reported as contention: %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestOpenURL_DynamoDB opens dynalite by URL (creating the table), takes a
// lock, inspects and lists it; DynamoDB keeps no completion records.
func TestOpenURL_DynamoDB(t *testing.T) {
	endpoint := strings.TrimPrefix(testenv.URL(t, testenv.DynamoDB), "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "dynamodb://" + endpoint + "/dlock_backends_test?tls=false&create_table=true&identity=t&prefix=p/"
	l, err := backends.OpenURL(ctx, url)
	if err != nil {
		t.Fatalf("OpenURL: %v", err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	key := "backends-test/dynamodb/" + time.Now().Format(time.RFC3339Nano)
	lk, err := l.Acquire(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if h, ok, err := l.(lock.Inspector).Inspect(ctx, key); err != nil || !ok || h.Identity != "t" || h.Token != lk.Token() {
		t.Errorf("Inspect = %+v, %v, %v; want identity t, token %d", h, ok, err, lk.Token())
	}
	found := false
	if err := l.(lock.Lister).List(ctx, key, func(k string, h lock.Holder) bool {
		found = found || k == key && h.Token == lk.Token()
		return true
	}); err != nil || !found {
		t.Errorf("List = %v, found %v", err, found)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	recordOnce(ctx, t, url, key, lk.Token())
	// Without create_table, a missing table fails the opening.
	if l, err := backends.OpenURL(ctx, "dynamodb://"+endpoint+"/dlock_no_such_table?tls=false"); err == nil {
		l.Close()
		t.Error("OpenURL of a missing table succeeded")
	}
}

// TestOpenURL_DynamoDBNeedsARegionAwayFromLoopback: no region in the URL
// or the environment is a configuration error, found before any request.
func TestOpenURL_DynamoDBNeedsARegionAwayFromLoopback(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	_, err := backends.OpenURL(context.Background(), "dynamodb://AKID:hunter2@dynamodb.invalid/dlock")
	if !errors.Is(err, backends.ErrInvalidURL) || !strings.Contains(err.Error(), "region") {
		t.Fatalf("OpenURL = %v, want ErrInvalidURL about the region", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the secret: %v", err)
	}
}

// recordOnce opens the completion records of url and records key's
// completion by the run with token: Begin finds nothing, Complete writes,
// Done reads it back.
func recordOnce(ctx context.Context, t *testing.T, url, key string, token uint64) {
	t.Helper()
	cfg, err := backends.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	r, err := backends.OpenRecords(ctx, cfg)
	if err != nil {
		t.Fatalf("OpenRecords: %v", err)
	}
	defer r.Close()
	if done, _, err := r.Begin(ctx, key, token, time.Minute); err != nil || done {
		t.Errorf("Begin = %v, %v; want not done", done, err)
	}
	if ok, err := r.Complete(ctx, key, token, time.Minute); err != nil || !ok {
		t.Errorf("Complete = %v, %v; want recorded", ok, err)
	}
	if done, by, err := r.Done(ctx, key); err != nil || !done || by != token {
		t.Errorf("Done = %v, %d, %v; want done by %d", done, by, err, token)
	}
}
