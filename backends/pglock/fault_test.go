package pglock_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// privatePG is a PostgreSQL server that one test owns: its own data
// directory and port, started and stopped by the test, never the shared one.
type privatePG struct {
	t    testing.TB
	dir  string
	port int
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

// startPrivatePG inits and starts a private server. It needs the shared
// server's variable to be set (the same machine setup) and the PostgreSQL 15
// binaries; it runs the server as the postgres user when the test runs as
// root, as PostgreSQL refuses root.
func startPrivatePG(t testing.TB) *privatePG {
	t.Helper()
	testenv.URL(t, testenv.Postgres) // skip or fail exactly as the other store tests
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		t.Fatalf("PostgreSQL 15 binaries: %v (scripts/services.sh start postgres installs them)", err)
	}
	p := &privatePG{t: t}
	dir, err := os.MkdirTemp("", "pglock-private-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(pgBin, "initdb"), "-D", filepath.Join(dir, "data"),
		"-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *privatePG) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

func (p *privatePG) start() {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(pgBin, "postgres"), "-D", filepath.Join(p.dir, "data"),
		"-p", strconv.Itoa(p.port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+p.dir, "-c", "max_connections=50")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	log, err := os.Create(filepath.Join(p.dir, "log"))
	if err != nil {
		p.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start postgres: %v", err)
	}
	log.Close()
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	p.t.Logf("private PostgreSQL pid %d on port %d", cmd.Process.Pid, p.port)
	eventually(p.t, 30*time.Second, "private PostgreSQL answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.url())
		if err != nil {
			return false
		}
		c.Close(ctx)
		return true
	})
}

// stop shuts the server down fast (SIGINT) and waits for it.
func (p *privatePG) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatal("private PostgreSQL did not stop within 30s")
	}
}

// kill ends the server by its PID, whatever its state.
func (p *privatePG) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	// The postmaster's children exit when they notice it is gone; they
	// are in its process group.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// PostgreSQL restarted while a lock is held: the holder is told at once,
// the lock is free after the restart, and the next token is larger.
func TestServerRestart_LockIsLostAndTokensKeepIncreasing(t *testing.T) {
	pg := startPrivatePG(t)
	pool := newPool(t, pg.url())
	for _, enforce := range []bool{false, true} {
		t.Run(fmt.Sprintf("EnforceTTL=%v", enforce), func(t *testing.T) {
			l := newLocker(t, pool, &pglock.Options{EnforceTTL: enforce})
			key := locktest.Key(t)
			lk, err := l.Acquire(ctxFor(t), key, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			held, stop := lock.Hold(ctxFor(t), lk, nil)
			defer stop()

			start := time.Now()
			pg.stop()
			select {
			case <-held.Done():
				t.Logf("server shutdown → held context cancelled in %v", time.Since(start))
			case <-time.After(10 * time.Second):
				t.Fatal("the held context outlived the server by 10s")
			}
			pg.start()

			if err := lk.Refresh(ctxFor(t), time.Minute); !errors.Is(err, lock.ErrLockNotHeld) {
				t.Errorf("Refresh after restart: %v, want ErrLockNotHeld", err)
			}
			var lk2 lock.Lock
			eventually(t, 10*time.Second, "Acquire after restart", func() bool {
				var err error
				lk2, err = l.Acquire(ctxFor(t), key, time.Minute)
				return err == nil // the pool's dead connections fail the first tries
			})
			if lk2.Token() <= lk.Token() {
				t.Errorf("token after restart %d, not larger than %d", lk2.Token(), lk.Token())
			}
			if err := lk2.Release(ctxFor(t)); err != nil {
				t.Error(err)
			}
		})
	}
}

// helperEnv tells the test binary, run again as a child, to be a lock
// holder (see TestHelperHolder).
const helperEnv = "DLOCK_PGLOCK_HELPER_KEY"

// TestHelperHolder is not a test: it is the child process of
// TestFrozenHolder. It acquires a lock in EnforceTTL mode, reports it on
// stdout, and waits to be stopped and killed.
func TestHelperHolder(t *testing.T) {
	key := os.Getenv(helperEnv)
	if key == "" {
		return // only runs as the child of TestFrozenHolder_EnforceTTLFreesTheLock
	}
	ttl, err := time.ParseDuration(os.Getenv(helperEnv + "_TTL"))
	if err != nil {
		t.Fatal(err)
	}
	pool := sharedPool(t)
	l := newLocker(t, pool, &pglock.Options{EnforceTTL: true})
	before := time.Now()
	lk, err := l.Acquire(ctxFor(t), key, ttl)
	if err != nil {
		fmt.Printf("error %v\n", err)
		return
	}
	fmt.Printf("held %d %d %d\n", before.UnixNano(), time.Now().UnixNano(), lk.Token())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until killed
}

// A holder that freezes (SIGSTOP) in EnforceTTL mode loses its lock when
// the server's idle_session_timeout ends its session: TTL after its last
// statement.
func TestFrozenHolder_EnforceTTLFreesTheLock(t *testing.T) {
	pool := sharedPool(t)
	other := newLocker(t, pool, nil)
	const ttl = 500 * time.Millisecond
	var over []time.Duration
	for round := range 5 {
		key := locktest.Key(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHolder$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+key, helperEnv+"_TTL="+ttl.String())
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		kill := func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-waited
			stdin.Close()
		}
		line := make(chan string, 1)
		go func() {
			s, _ := bufio.NewReader(stdout).ReadString('\n')
			line <- s
		}()
		var got string
		select {
		case got = <-line:
		case <-time.After(30 * time.Second):
			kill()
			t.Fatal("the child did not report its lock within 30s")
		}
		f := strings.Fields(got)
		if len(f) != 4 || f[0] != "held" {
			kill()
			t.Fatalf("child: %q", got)
		}
		if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			kill()
			t.Fatal(err)
		}
		beforeNS, _ := strconv.ParseInt(f[1], 10, 64)
		afterNS, _ := strconv.ParseInt(f[2], 10, 64)
		token, _ := strconv.ParseUint(f[3], 10, 64)
		lk := acquireWithin(t, other, key, ttl+10*time.Second)
		freed := time.Now()
		kill()
		if d := freed.Sub(time.Unix(0, beforeNS)); d < ttl {
			t.Errorf("round %d: the lock was free %v after the frozen holder began acquiring, before its TTL %v", round, d, ttl)
		}
		if lk.Token() <= token {
			t.Errorf("round %d: token %d after the frozen holder's %d", round, lk.Token(), token)
		}
		_ = lk.Release(ctxFor(t))
		over = append(over, freed.Sub(time.Unix(0, afterNS)))
	}
	t.Logf("frozen holder, TTL %v: lock free %v after its acquire returned (median of %d; min %v, max %v; polled every 5ms)",
		ttl, median(over), len(over), slices.Min(over), slices.Max(over))
}

// A session whose server backend stops answering (here: SIGSTOP of the
// backend process of a private server) is closed by the health check after
// OpTimeout; the statement waiting on it fails and its locks are lost.
func TestHungSession_IsClosedAfterOpTimeout(t *testing.T) {
	pg := startPrivatePG(t)
	pool := newPool(t, pg.url())
	const opTimeout = 300 * time.Millisecond
	l := newLocker(t, pool, &pglock.Options{OpTimeout: opTimeout, HealthInterval: 50 * time.Millisecond})
	key := locktest.Key(t)
	lk, err := l.Acquire(ctxFor(t), key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pid := holderPID(t, pool, "", key)
	if err := syscall.Kill(int(pid), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(int(pid), syscall.SIGCONT)
	start := time.Now()
	err = lk.Refresh(ctxFor(t), time.Minute)
	took := time.Since(start)
	if !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Refresh on a hung session: %v, want ErrLockNotHeld", err)
	}
	if took < opTimeout || took > opTimeout+5*time.Second {
		t.Errorf("Refresh returned after %v, want about OpTimeout %v + HealthInterval", took, opTimeout)
	}
	t.Logf("hung backend → Refresh reported the loss after %v (OpTimeout %v, HealthInterval 50ms)", took, opTimeout)
	_ = syscall.Kill(int(pid), syscall.SIGCONT)
	// The Locker goes on with a new session.
	_ = acquireWithin(t, l, locktest.Key(t), 10*time.Second).Release(ctxFor(t))
}

// When every session of a Locker hangs (a partition, or here: SIGSTOP of
// each server backend), a holder is still told at TTL − margin while its
// refresh waits on the silent connection, and the health check — whose own
// ping then hangs too — still closes the hung sessions after OpTimeout.
// (Found by the reliability battery: a leader cut off from PostgreSQL went
// on leading for 10–22 s after the next leader was elected.)
func TestAllSessionsHung_HolderToldAtItsDeadlineAndSessionsClosed(t *testing.T) {
	pg := startPrivatePG(t)
	pool := newPool(t, pg.url())
	const (
		ttl       = time.Second
		opTimeout = 3 * time.Second
	)
	l := newLocker(t, pool, &pglock.Options{Sessions: 2, OpTimeout: opTimeout, HealthInterval: 50 * time.Millisecond})
	// Two locks on two different sessions.
	first, err := l.Acquire(ctxFor(t), locktest.Key(t), ttl)
	if err != nil {
		t.Fatal(err)
	}
	firstPID := holderPID(t, pool, "", first.Key())
	var second lock.Lock
	for i := 0; i < 64 && second == nil; i++ {
		lk, err := l.Acquire(ctxFor(t), fmt.Sprintf("%s/%d", locktest.Key(t), i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if holderPID(t, pool, "", lk.Key()) != firstPID {
			second = lk
		} else if err := lk.Release(ctxFor(t)); err != nil {
			t.Fatal(err)
		}
	}
	if second == nil {
		t.Fatal("no key landed on the second session")
	}
	secondPID := holderPID(t, pool, "", second.Key())

	held, stop := lock.Hold(context.Background(), first, nil)
	defer stop()
	start := time.Now()
	for _, pid := range []int32{firstPID, secondPID} {
		if err := syscall.Kill(int(pid), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(int(pid), syscall.SIGCONT)
	}
	select {
	case <-held.Done():
	case <-time.After(opTimeout):
		t.Fatalf("the holder was not told within OpTimeout (%v) of its sessions hanging; TTL %v", opTimeout, ttl)
	}
	told := time.Since(start)
	if cause := context.Cause(held); !errors.Is(cause, lock.ErrLockNotHeld) {
		t.Errorf("cause = %v, want ErrLockNotHeld", cause)
	}
	refreshStart := time.Now()
	err = second.Refresh(ctxFor(t), time.Minute)
	took := time.Since(refreshStart)
	if !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Refresh on a hung session: %v, want ErrLockNotHeld", err)
	}
	if took > opTimeout+5*time.Second {
		t.Errorf("Refresh returned after %v, want within about OpTimeout %v", took, opTimeout)
	}
	t.Logf("all sessions hung: holder told after %v (TTL %v), refresh on the other session failed after %v (OpTimeout %v)", told, ttl, took, opTimeout)
}
