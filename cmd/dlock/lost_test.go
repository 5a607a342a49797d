package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dlockgo/dlock/backends/pglock"
)

// steal makes the store lose key's lock behind its holder's back: the key
// is deleted (Redis, etcd), or the holder's session is terminated
// (PostgreSQL).
func steal(t *testing.T, s store, key string) {
	t.Helper()
	ctx := ctxT(t)
	switch s.name {
	case "redis":
		opt, err := redis.ParseURL(s.url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opt)
		defer c.Close()
		if n, err := c.Del(ctx, "dlock:{"+key+"}").Result(); err != nil || n != 1 {
			t.Fatalf("DEL: %d, %v", n, err)
		}
	case "etcd":
		c, err := clientv3.New(clientv3.Config{
			Endpoints: []string{strings.TrimPrefix(s.url, "etcd://")}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if r, err := c.Delete(ctx, "/dlock/"+key); err != nil || r.Deleted != 1 {
			t.Fatalf("etcd delete: %v, %v", r, err)
		}
	case "postgres":
		c, err := pgx.Connect(ctx, strings.Split(s.url, "?")[0]+"?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		err = c.QueryRow(ctx, `SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			AND l.classid = (($1::bigint >> 32) & 4294967295)::oid AND l.objid = ($1::bigint & 4294967295)::oid`,
			pglock.KeyID("", key)).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("pg_terminate_backend: %d, %v", n, err)
		}
	default:
		t.Fatalf("no way to steal from %s", s.name)
	}
}

func TestRun_LostLockStopsTheCommand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string // $1 is a directory
		killed bool   // the command ignores SIGTERM
	}{
		{"polite", `trap 'echo TERM > "$1/term"; exit 3' TERM; echo "$$" > "$1/started"; while :; do sleep 0.05; done`, false},
		{"stubborn", `trap '' TERM; echo "$$" > "$1/started"; while :; do sleep 0.05; done`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, s store) {
				dir, key := t.TempDir(), randomKey(t)
				const grace = time.Second
				a := start(t, s.url, "run", "--ttl", "3s", "--grace", grace.String(), "--key", key, "--",
					"sh", "-c", tc.script, "sh", dir)
				pid, _ := strconv.Atoi(strings.TrimSpace(fileHas(t, filepath.Join(dir, "started"), 15*time.Second)))
				t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })

				stolen := time.Now()
				steal(t, s, key)
				code := a.wait(15 * time.Second)
				took := time.Since(stolen)
				stderr := a.stderr.String()
				t.Logf("%s: dlock exited %v after the loss; stderr: %s", s.name, took, stderr)
				if code != exitLost {
					t.Errorf("exit %d, want %d (lost)", code, exitLost)
				}
				if !strings.Contains(stderr, "lost") {
					t.Errorf("stderr does not say the lock was lost: %q", stderr)
				}
				if tc.killed {
					if !strings.Contains(stderr, "killed") || took < grace {
						t.Errorf("a command that ignores SIGTERM: stderr %q after %v; want SIGKILL after --grace %v", stderr, took, grace)
					}
				} else {
					if _, err := os.Stat(filepath.Join(dir, "term")); err != nil {
						t.Errorf("the command did not get SIGTERM: %v", err)
					}
					if strings.Contains(stderr, "killed") {
						t.Errorf("a command that stopped on SIGTERM was killed: %q", stderr)
					}
				}
				// The command is gone (its process group is empty).
				waitFor(t, 5*time.Second, "the command's process group to be gone", func() bool {
					return syscall.Kill(-pid, 0) != nil
				})
			})
		})
	}
}
