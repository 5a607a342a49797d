package redislock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// singleClient connects to the shared redis-server of scripts/services.sh.
func singleClient(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.URL(t, testenv.Redis))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s: %v", opt.Addr, err)
	}
	return c
}

// clusterClient connects to the shared 3-master cluster. The URL is
// redis://host:port,host:port,…
func clusterClient(t *testing.T) *redis.ClusterClient {
	t.Helper()
	u := testenv.URL(t, testenv.RedisCluster)
	addrs := strings.Split(strings.TrimPrefix(u, "redis://"), ",")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ForEachShard(ctx, func(ctx context.Context, s *redis.Client) error {
		return s.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("redis cluster at %s: %v", u, err)
	}
	return c
}

// randomKey returns a key no other test uses.
func randomKey(t *testing.T) string {
	var b [8]byte
	rand.Read(b[:])
	return t.Name() + "/" + hex.EncodeToString(b[:])
}

// privateRedis is a redis-server that one test starts, restarts and stops
// for itself, on a free loopback port, without persistence.
type privateRedis struct {
	t    *testing.T
	dir  string
	port int

	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has been reaped
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		// The shared server's variable says whether redis is expected here.
		testenv.URL(t, testenv.Redis)
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (scripts/services.sh installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	r := &privateRedis{t: t, dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		r.port = freePort(t)
		err := r.start()
		if err == nil {
			break
		}
		if attempt == 4 {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs redis-server and waits until it answers.
func (r *privateRedis) start() error {
	cmd := exec.Command("redis-server",
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--enable-debug-command", "local",
		"--logfile", r.dir+"/redis.log")
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			r.cmd, r.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on :%d exited: %v", r.port, err)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on :%d did not answer: %v", r.port, err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// stop kills the server (by its PID, SIGKILL: nothing is flushed) and
// waits until it has exited. Stopping a stopped server does nothing.
func (r *privateRedis) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd, r.exited = nil, nil
}

// restart stops the server and starts a fresh one on the same port: it
// remembers nothing.
func (r *privateRedis) restart() {
	r.t.Helper()
	r.stop()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// client returns a go-redis client of the private server, closed when the
// test ends.
func (r *privateRedis) client(opt *redis.Options) *redis.Client {
	if opt == nil {
		opt = &redis.Options{}
	}
	opt.Addr = r.Addr()
	c := redis.NewClient(opt)
	r.t.Cleanup(func() { c.Close() })
	return c
}
