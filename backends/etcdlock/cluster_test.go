package etcdlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

// privateCluster is a 3-member etcd cluster that one test starts on free
// loopback ports in a temporary directory, so that it may kill and restart
// members without disturbing anyone else.
type privateCluster struct {
	t       *testing.T
	members []*member
}

type member struct {
	name     string
	endpoint string // host:port of the client URL
	args     []string
	logPath  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// memDir returns a temporary directory in memory (/dev/shm) when there is
// one, removed after the test, else t.TempDir(). The members' data lives
// there: a SIGKILL is a process crash, which memory survives like a disk,
// and the test is about Raft and leases, not fsync; without fsync costs the
// cluster keeps up with the suite on a loaded machine.
func memDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "dlock-etcd-test-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func startPrivateCluster(t *testing.T) *privateCluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("etcd binary not found: %v", err)
		}
		t.Skipf("etcd binary not found (scripts/services.sh installs it): %v", err)
	}
	dir := memDir(t)
	ports := freePorts(t, 6)
	var initial string
	for i := range 3 {
		if i > 0 {
			initial += ","
		}
		initial += fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1])
	}
	pc := &privateCluster{t: t}
	for i := range 3 {
		name := fmt.Sprintf("m%d", i)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		m := &member{
			name:     name,
			endpoint: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			logPath:  filepath.Join(dir, name+".log"),
			args: []string{bin, "--name", name, "--data-dir", filepath.Join(dir, name),
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
				"--initial-cluster", initial, "--initial-cluster-token", "dlock-private-" + filepath.Base(dir),
				"--initial-cluster-state", "new",
				// Pre-vote (the default from etcd 3.5) keeps a restarted
				// member from deposing a healthy leader.
				"--pre-vote",
				"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"},
		}
		pc.members = append(pc.members, m)
	}
	t.Cleanup(func() {
		for _, m := range pc.members {
			m.kill()
		}
	})
	for _, m := range pc.members {
		m.start(t)
	}
	c := pc.client(t)
	for _, m := range pc.members {
		pc.waitHealthy(c, m)
	}
	return pc
}

func (m *member) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start %s: %v", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
}

// kill sends SIGKILL (a crash: no clean shutdown) and waits for the exit.
func (m *member) kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

func (pc *privateCluster) endpoints() []string {
	var eps []string
	for _, m := range pc.members {
		eps = append(eps, m.endpoint)
	}
	return eps
}

func (pc *privateCluster) client(t testing.TB) *clientv3.Client {
	return dial(t, pc.endpoints(), nil)
}

// waitHealthy waits until m answers and knows a leader.
func (pc *privateCluster) waitHealthy(c *clientv3.Client, m *member) {
	pc.t.Helper()
	eventually(pc.t, 30*time.Second, m.name+" healthy", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := c.Status(ctx, m.endpoint)
		return err == nil && s.Leader != 0
	})
}

// stableLeader waits until all members answer, agree on the leader and
// term, and have applied the same log index (the restarted one caught up),
// and returns the leader and its term.
func (pc *privateCluster) stableLeader(c *clientv3.Client) (*member, uint64) {
	pc.t.Helper()
	var l *member
	var term uint64
	eventually(pc.t, 30*time.Second, "a stable leader", func() bool {
		l, term = nil, 0
		var leaderID uint64
		var index uint64
		for i, m := range pc.members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s, err := c.Status(ctx, m.endpoint)
			cancel()
			if err != nil || s.Leader == 0 {
				return false
			}
			if i == 0 {
				leaderID, term, index = s.Leader, s.RaftTerm, s.RaftAppliedIndex
			}
			if s.Leader != leaderID || s.RaftTerm != term || diff(s.RaftAppliedIndex, index) > 100 {
				return false
			}
			if s.Header.MemberId == s.Leader {
				l = m
			}
		}
		return l != nil
	})
	return l, term
}

func diff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// term returns the Raft term as seen by any live member, 0 if none answers.
func (pc *privateCluster) term(c *clientv3.Client, except *member) uint64 {
	for _, m := range pc.members {
		if m == except {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := c.Status(ctx, m.endpoint)
		cancel()
		if err == nil {
			return s.RaftTerm
		}
	}
	return 0
}

// prober acquires and releases keys of its own in a loop and records when
// each successful attempt started and ended. Every attempt uses a new key,
// so that a lock whose release failed in the kill does not hold up the next
// attempt: what it measures is the store's unavailability, not a TTL.
type prober struct {
	mu   sync.Mutex
	ok   []attempt
	errs map[string]int // distinct errors since the last errors() call
}

type attempt struct{ start, end time.Time }

func (p *prober) run(ctx context.Context, l lock.Locker, prefix string) {
	for i := 0; ctx.Err() == nil; i++ {
		// A short timeout per attempt: an attempt stuck on a request
		// the dead leader will never answer would otherwise hide the
		// moment a new leader can serve.
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		lk, err := l.Acquire(actx, fmt.Sprint(prefix, "/", i), 5*time.Second)
		cancel()
		if err != nil {
			p.mu.Lock()
			if p.errs == nil {
				p.errs = map[string]int{}
			}
			p.errs[err.Error()]++
			p.mu.Unlock()
			sleepCtx(ctx, 5*time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.ok = append(p.ok, attempt{start, time.Now()})
		p.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = lk.Release(rctx)
		cancel()
	}
}

// errors returns the distinct errors seen since the last call, and forgets them.
func (p *prober) errors() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.errs
	p.errs = nil
	return e
}

// firstStartedAfter returns when the first successful attempt that started
// at or after t0 ended, and whether there is one.
func (p *prober) firstStartedAfter(t0 time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.ok {
		if !a.start.Before(t0) {
			return a.end, true
		}
	}
	return time.Time{}, false
}

// successesAfter returns the number of successful attempts started after t0.
func (p *prober) successesAfter(t0 time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.ok {
		if !a.start.Before(t0) {
			n++
		}
	}
	return n
}

// TestCluster_LeaderKill runs the conformance stress workload (8
// goroutines, 4 Lockers each on its own client, 4 keys, checked by
// locktest.Checker) on a private 3-member cluster while the Raft leader is
// killed with SIGKILL and restarted, five times; it measures how long no
// acquisition could succeed. Then the whole conformance suite runs on the
// cluster that went through it.
func TestCluster_LeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills etcd members for about a minute")
	}
	pc := startPrivateCluster(t)
	admin := pc.client(t)

	const (
		lockers    = 4
		goroutines = 8
		nkeys      = 4
		kills      = 5
		ttl        = 5 * time.Second
	)
	// The workload's Lockers and clients are closed before the suite runs.
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	ls := make([]lock.Locker, lockers)
	for i := range ls {
		c := pc.client(t)
		l, err := etcdlock.New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
		closers = append(closers, l.Close, c.Close)
	}
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = randomKey(t)
	}
	checker := locktest.NewChecker()
	var storeErrs, late atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			who := fmt.Sprintf("g%d", g)
			l := ls[g%lockers]
			for i := 0; ctx.Err() == nil; i++ {
				key := keys[(g+i)%nkeys]
				actx, cancel := context.WithTimeout(ctx, 3*time.Second)
				lk, err := l.Acquire(actx, key, ttl)
				cancel()
				if errors.Is(err, lock.ErrLockNotAcquired) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						storeErrs.Add(1)
						sleepCtx(ctx, 5*time.Millisecond)
					}
					continue
				}
				// A lock whose TTL ran out while Acquire waited for
				// a new leader must not be used (lock.Hold would have
				// cancelled it); count it, and check it never happens.
				if !time.Now().Before(lk.(lock.Expirer).Expiry()) {
					late.Add(1)
				} else {
					checker.Enter(key, who, lk.Token())
					sleepCtx(ctx, time.Millisecond)
					checker.Exit(key, who)
				}
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
				if err := lk.Release(rctx); err != nil && !errors.Is(err, lock.ErrLockNotHeld) {
					storeErrs.Add(1)
				}
				cancel()
			}
		})
	}
	probeClient := pc.client(t)
	probeLocker, err := etcdlock.New(probeClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	closers = append(closers, probeLocker.Close, probeClient.Close)
	p := &prober{}
	wg.Go(func() { p.run(ctx, probeLocker, randomKey(t)) })

	var windows []time.Duration
	for i := range kills {
		settled := time.Now()
		eventually(t, 30*time.Second, "probe acquisitions before the kill", func() bool { return p.successesAfter(settled) >= 20 })
		victim, term := pc.stableLeader(admin)
		p.errors()
		victim.kill() // SIGKILL, and the process is gone when kill returns
		killedAt := time.Now()
		var back time.Time
		eventually(t, 30*time.Second, "an acquisition after the leader kill", func() bool {
			var ok bool
			back, ok = p.firstStartedAfter(killedAt)
			return ok
		})
		if now := pc.term(admin, victim); now <= term {
			t.Fatalf("kill %d: term %d after killing the leader of term %d: no election", i+1, now, term)
		}
		w := back.Sub(killedAt)
		windows = append(windows, w)
		t.Logf("kill %d: leader %s killed; no acquisition for %v; probe errors meanwhile: %v", i+1, victim.name, w.Round(time.Millisecond), p.errors())
		victim.start(t)
		pc.waitHealthy(admin, victim)
	}
	stop()
	wg.Wait()
	for _, c := range closers {
		_ = c()
	}
	closers = nil

	for _, pr := range checker.Problems() {
		t.Error(pr)
	}
	if checker.Sections() == 0 {
		t.Fatal("no critical section entered")
	}
	if late.Load() > 0 {
		t.Errorf("%d acquisitions returned after their TTL had run out", late.Load())
	}
	sorted := slices.Clone(windows)
	slices.Sort(sorted)
	t.Logf("%d critical sections, 0 overlaps, %d store errors (during the kills); unavailability windows %v, median %v",
		checker.Sections(), storeErrs.Load(), windows, sorted[len(sorted)/2].Round(time.Millisecond))

	pc.stableLeader(admin) // the last restarted member has caught up
	t.Run("ConformanceAfterKills", func(t *testing.T) {
		locktest.Run(t, func(t *testing.T) driver.Backend {
			b, err := etcdlock.NewBackend(pc.client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, suiteOptions(t, admin))
	})
}
