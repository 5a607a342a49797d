package zklock_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proxy forwards TCP connections to a ZooKeeper server and can cut them:
// the client then sees its connection drop and every reconnection refused,
// as in a partition, while the server counts down the session.
type proxy struct {
	t        testing.TB
	addr     string // where clients connect
	upstream string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, upstream string) *proxy {
	t.Helper()
	p := &proxy{t: t, upstream: upstream}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, u); c.Close() })
		}
	})
}

// cut closes the listener and every forwarded connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// heal listens again on the same address.
func (p *proxy) heal() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// zkServer is a private standalone ZooKeeper, started from Debian's jar,
// for tests that restart a server.
type zkServer struct {
	t    testing.TB
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startZK starts a private server on a free port with its data in a
// temporary directory. It skips the test when Java or ZooKeeper is
// missing, except under CI, where it fails.
func startZK(t testing.TB) *zkServer {
	t.Helper()
	const jar = "/usr/share/java/zookeeper.jar"
	if _, err := exec.LookPath("java"); err != nil {
		missing(t, "java")
	}
	if _, err := os.Stat(jar); err != nil {
		missing(t, jar)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("tickTime=100\nminSessionTimeout=200\nmaxSessionTimeout=60000\n"+
		"dataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n"+
		"4lw.commands.whitelist=srvr\n", filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &zkServer{t: t, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing: scripts/services.sh start zookeeper installs it", what)
	}
	t.Skipf("%s is missing: scripts/services.sh start zookeeper installs it", what)
}

func (s *zkServer) start() {
	s.t.Helper()
	cp := s.dir + ":/usr/share/java/zookeeper.jar"
	if _, err := os.Stat("/usr/share/java/slf4j-nop.jar"); err == nil {
		cp += ":/usr/share/java/slf4j-nop.jar"
	}
	s.cmd = exec.Command("java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", cp, "org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(s.dir, "zoo.cfg"))
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(60 * time.Second)
	for !s.serving() {
		select {
		case <-s.done:
			s.t.Fatalf("zookeeper exited: %s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("zookeeper did not answer within 60s: %s", s.logTail())
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness
	}
}

// serving asks the server `srvr`, which reports its zxid only once it
// serves clients (`ruok` answers earlier, while sessions are still
// refused).
func (s *zkServer) serving() bool {
	c, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	b, _ := io.ReadAll(c)
	return strings.Contains(string(b), "Zxid:")
}

// kill stops the server with SIGKILL, by its PID, and waits for it.
func (s *zkServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

func (s *zkServer) stop() { s.kill() }

func (s *zkServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
