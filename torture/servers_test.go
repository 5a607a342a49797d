package torture_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Private servers: the tests that restart a store start their own, on
// free ports, and stop them by PID. The shared servers are never touched.

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found", bin)
		}
		t.Skipf("%s not found", bin)
	}
	return p
}

// server is a process the test started; start runs it (again).
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *server) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	c, d := cmd, s.done
	go func() { c.Wait(); close(d) }()
	return nil
}

// stop signals the process and waits for it.
func (s *server) stop(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	<-s.done
	s.cmd = nil
}

// waitFor polls cond until it is true or 30 s have passed.
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	return fmt.Errorf("%s did not come up", what)
}

func dialable(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// privateRedis starts a redis-server of the test's own, without persistence,
// on a free port, and returns its URL and a function that kills it (-9) and
// starts it again on the same port.
func privateRedis(t *testing.T) (string, func() error) {
	bin := need(t, "redis-server")
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	var s server
	start := func() error {
		if err := s.start(exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)); err != nil {
			return err
		}
		return waitFor("private redis-server", func() bool { return dialable(addr) })
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(syscall.SIGKILL) })
	return "redis://" + addr + "/0", func() error {
		s.stop(syscall.SIGKILL)
		return start()
	}
}

// privatePostgres initdb's a PostgreSQL 15 cluster in a temporary
// directory, runs it as the postgres user on a free port (fsync off: the
// machine does not crash, only the server; synchronous_commit stays on,
// or acknowledged commits and sequence values are lost at a restart), and returns its
// URL and a function that shuts it down immediately (SIGQUIT: backends are
// killed, no checkpoint; crash recovery at the next start) and starts it
// again.
func privatePostgres(t *testing.T) (string, func() error) {
	binDir := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(binDir, "initdb")); err != nil {
		need(t, filepath.Join(binDir, "initdb"))
	}
	u, err := user.Lookup("postgres")
	if err != nil || os.Geteuid() != 0 {
		// initdb refuses to run as root; the server runs as postgres.
		if os.Getenv("CI") != "" {
			t.Fatal("a private PostgreSQL needs root and a postgres user")
		}
		t.Skip("a private PostgreSQL needs root and a postgres user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "torture-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	asPostgres := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(binDir, name), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		c.Dir = dir
		return c
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	var s server
	start := func() error {
		c := asPostgres("postgres", "-D", data, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories="+dir, "-c", "fsync=off", "-c", "max_connections=200")
		c.Stdout, c.Stderr = logf, logf
		if err := s.start(c); err != nil {
			return err
		}
		return waitFor("private postgres", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				return false
			}
			conn.Close(ctx)
			return true
		})
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(syscall.SIGQUIT) })
	return url, func() error {
		s.stop(syscall.SIGQUIT)
		return start()
	}
}

// privateEtcd starts a 3-member etcd cluster of the test's own (data in
// /dev/shm when there is one, heartbeat 50 ms, election timeout 500 ms so
// that a 1 s lease is allowed) and returns its URL and a function that
// kills one member (-9) and starts it again: the leader every other time,
// found with the maintenance Status API.
func privateEtcd(t *testing.T) (string, func() (string, error)) {
	bin := need(t, "etcd")
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "torture-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const n = 3
	var client, peer [n]string
	var initial []string
	for i := range n {
		client[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		peer[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, peer[i]))
	}
	var members [n]server
	start := func(i int) error {
		c := exec.Command(bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", "http://"+client[i], "--advertise-client-urls", "http://"+client[i],
			"--listen-peer-urls", "http://"+peer[i], "--initial-advertise-peer-urls", "http://"+peer[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", filepath.Base(dir),
			"--initial-cluster-state", "new", "--heartbeat-interval", "50", "--election-timeout", "500", "--pre-vote",
			"--logger", "zap", "--log-level", "error", "--log-outputs", filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		return members[i].start(c)
	}
	for i := range n {
		if err := start(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range n {
			members[i].stop(syscall.SIGKILL)
		}
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: client[:], DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	// status reports whether member i answers and whether it is the leader.
	status := func(i int) (up, leader bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		st, err := cli.Status(ctx, client[i])
		if err != nil {
			return false, false
		}
		return true, st.Leader != 0 && st.Leader == st.Header.MemberId
	}
	hasLeader := func() bool {
		for i := range n {
			if _, l := status(i); l {
				return true
			}
		}
		return false
	}
	if err := waitFor("private etcd cluster", hasLeader); err != nil {
		t.Fatal(err)
	}
	bounces := 0
	bounce := func() (string, error) {
		bounces++
		victim, what := bounces%n, "member"
		if bounces%2 == 1 {
			for i := range n {
				if _, l := status(i); l {
					victim, what = i, "leader"
				}
			}
		}
		members[victim].stop(syscall.SIGKILL)
		if err := start(victim); err != nil {
			return "", err
		}
		name := fmt.Sprintf("m%d(%s)", victim, what)
		return name, waitFor("etcd member "+name, func() bool { up, _ := status(victim); return up && hasLeader() })
	}
	return "etcd://" + strings.Join(client[:], ","), bounce
}
