package torture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/lock"
	"github.com/jackc/pgx/v5"
)

// Options configure a [Run].
type Options struct {
	URL      string // lock store URL
	Register string // URL of the fenced register's store; default URL
	// Restart kills the store's server and starts it again, for the
	// restart fault: a store that forgets its locks (or frees them).
	Restart func() error
	// Bounce kills one member of a replicated store and starts it again,
	// for the bounce fault; locks must survive it. It returns the member's
	// name (say "m1 (leader)").
	Bounce     func() (string, error)
	Clients    int           // clients
	Duration   time.Duration // how long clients start new acquisitions
	Seed       uint64        // drives keys, work times and the nemesis
	Keys       int           // distinct lock keys
	TTL        time.Duration // lock TTL
	MaxWork    time.Duration // work time is uniform in [0, MaxWork]
	Faults     []string      // kill, stop, terminate, restart, bounce, cut, drop
	FaultEvery time.Duration // time between faults
	Bound      time.Duration // allowed work after a loss signal
	// Slack is how long beyond the TTL a lock nobody knows of may keep
	// others out (see [Limits]); default 250ms.
	Slack time.Duration
	// Linearizability is porcupine's time budget; 0 skips it.
	Linearizability time.Duration
	// Proxy puts a [Proxy] between each client and each address of the
	// store (the URL is rewritten), for the cut and drop faults.
	Proxy bool
	// InProcess runs the clients as goroutines of this process sharing one
	// Locker (a store whose locks live in one process: memlock). kill then
	// means the client abandons its lock without release and stops
	// refreshing; stop means it blocks, refreshes included.
	InProcess bool
	Dir       string // logs go here
	Logf      func(format string, args ...any)
}

// Result is a run's report and what was run.
type Result struct {
	*Report
	Opts Options
}

// proc is a client: a process, or a goroutine with a control.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	ctl  *control
	done chan struct{}
}

// kill ends the client at once (kill -9, or abandon), waits for it, and
// returns the time after which it ran no more code: when kill(2) returned
// (its connections may close before it is reaped, and the store may free
// its locks then), or when the goroutine returned.
func (p *proc) kill() time.Time {
	var t time.Time
	if p.ctl != nil {
		p.ctl.kill()
		<-p.done
		t = time.Now()
	} else {
		p.cmd.Process.Signal(syscall.SIGKILL)
		t = time.Now()
		<-p.done
	}
	return t
}

// freeze stops the client and reports whether it is stopped.
func (p *proc) freeze() bool {
	if p.ctl != nil {
		p.ctl.freeze()
		return poll(time.Second, p.ctl.parked.Load)
	}
	p.cmd.Process.Signal(syscall.SIGSTOP)
	return waitStopped(p.cmd.Process.Pid, time.Second)
}

func (p *proc) thaw() {
	if p.ctl != nil {
		p.ctl.thaw()
	} else {
		p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Run spawns the clients (the running binary, re-executed with
// [ClientEnv] set, or goroutines with [Options.InProcess]), runs the
// nemesis until the end, waits for the clients and checks their logs.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Register == "" {
		o.Register = o.URL
	}
	if o.Slack == 0 {
		o.Slack = 250 * time.Millisecond
	}
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	run := fmt.Sprintf("r%d", o.Seed%1_000_000)
	keys := make([]string, o.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("torture-%s-%x-k%d", run, time.Now().UnixNano()&0xffffff, i)
	}
	if err := PrepareRegister(ctx, o.Register, keys); err != nil {
		return nil, fmt.Errorf("prepare register: %w", err)
	}
	var shared lock.Locker
	if o.InProcess {
		var err error
		if shared, err = backends.OpenURL(ctx, o.URL); err != nil {
			return nil, err
		}
		defer shared.Close()
	}
	// One proxy per client slot and store address, kept across a slot's
	// incarnations.
	proxies := make([][]*Proxy, o.Clients)
	urls := make([]string, o.Clients)
	defer func() {
		for _, ps := range proxies {
			for _, p := range ps {
				p.Close()
			}
		}
	}()
	for i := range urls {
		urls[i] = o.URL
		if !o.Proxy {
			continue
		}
		u, err := rewriteHosts(o.URL, func(h string) (string, error) {
			p, err := NewProxy(h)
			if err != nil {
				return "", err
			}
			proxies[i] = append(proxies[i], p)
			return p.Addr(), nil
		})
		if err != nil {
			return nil, err
		}
		urls[i] = u
	}
	deadline := time.Now().Add(o.Duration)

	var mu sync.Mutex
	slots := make([]*proc, o.Clients)
	var all []*proc
	incarnation := make([]int, o.Clients)
	spawn := func(i int) (*proc, error) {
		incarnation[i]++
		name := fmt.Sprintf("%sc%d.%d", run, i, incarnation[i])
		p := &proc{name: name, log: filepath.Join(o.Dir, name+".log"), done: make(chan struct{})}
		cfg := ClientConfig{Name: name, URL: urls[i], Register: o.Register, Keys: keys, Log: p.log, TTL: o.TTL, MaxWork: o.MaxWork,
			Deadline: deadline, Seed: rnd.Uint64()}
		if i == 0 && o.Clients > 1 {
			// A long holder, whose locks must be refreshed: the target of
			// cuts and pauses when it holds one.
			cfg.MaxWork = max(o.MaxWork, o.TTL)
		}
		if o.InProcess {
			p.ctl = newControl()
			cfg.locker, cfg.ctl = shared, p.ctl
			go func() {
				defer close(p.done)
				if err := RunClient(context.WithoutCancel(ctx), cfg); err != nil && o.Logf != nil {
					o.Logf("client %s: %v", name, err)
				}
			}()
		} else {
			p.cmd = exec.Command(os.Args[0], "-test.run=^$")
			p.cmd.Env = append(os.Environ(), cfg.Env()...)
			errf, err := os.Create(filepath.Join(o.Dir, name+".err"))
			if err != nil {
				return nil, err
			}
			p.cmd.Stdout, p.cmd.Stderr = errf, errf
			if err := p.cmd.Start(); err != nil {
				errf.Close()
				return nil, err
			}
			go func() { p.cmd.Wait(); errf.Close(); close(p.done) }()
		}
		mu.Lock()
		slots[i] = p
		all = append(all, p)
		mu.Unlock()
		return p, nil
	}
	for i := range o.Clients {
		if _, err := spawn(i); err != nil {
			return nil, err
		}
	}

	var nemesis bytes.Buffer
	note := func(op, client string, t time.Time) {
		nemesis.WriteString(Format(Event{Op: op, Client: client, T: t.UnixNano()}) + "\n")
	}
	var pg *pgx.Conn
	if cfg, err := backends.ParseURL(o.URL); err == nil && cfg.Store == backends.Postgres && contains(o.Faults, "terminate") {
		if pg, err = pgx.Connect(ctx, cfg.PostgresDSN); err != nil {
			return nil, err
		}
		defer pg.Close(context.WithoutCancel(ctx))
	}
	pause := 2*o.TTL + 200*time.Millisecond
	var nemErr error
	if len(o.Faults) > 0 {
		skips := 0
		for n := 0; ; n++ {
			fault := o.Faults[n%len(o.Faults)]
			next := time.Now().Add(o.FaultEvery)
			need := o.TTL // room for the fault to play out before the end
			switch fault {
			case "stop", "cut":
				need = pause
			case "bounce", "restart":
				need = 2 * o.TTL
			}
			if next.Add(need).After(deadline) {
				// No room for this one: try the others once more.
				if skips++; skips >= len(o.Faults) {
					break
				}
				continue
			}
			skips = 0
			select {
			case <-time.After(time.Until(next)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			i := pickHolder(rnd, slots)
			if (fault == "cut" || fault == "stop") && holding(slots[0].log) {
				i = 0
			}
			if fault == "drop" {
				// Lost replies matter most to a client that is acquiring.
				i = pickNonHolder(rnd, slots)
			}
			p := slots[i]
			switch fault {
			case "kill":
				note("kill", p.name, p.kill())
				if _, err := spawn(i); err != nil {
					nemErr = err
				}
			case "stop":
				if p.freeze() {
					note("stop", p.name, time.Now())
					time.Sleep(pause) // the fault itself: frozen for longer than the TTL
					note("cont", p.name, time.Now())
				}
				p.thaw()
			case "cut":
				// A partition between one client and the store, longer
				// than the TTL: the client must learn it lost its locks
				// (lock.Hold's deadline) before anyone else gets them.
				for _, px := range proxies[i] {
					px.Cut()
				}
				note("cut", p.name, time.Now())
				time.Sleep(pause) // the fault itself
				note("heal", p.name, time.Now())
				for _, px := range proxies[i] {
					px.Heal()
				}
			case "drop":
				// The store applies the client's commands but its replies
				// are lost, then the connections close.
				for _, px := range proxies[i] {
					px.DropReplies(true)
				}
				note("drop", p.name, time.Now())
				time.Sleep(o.TTL / 5) // the fault itself
				for _, px := range proxies[i] {
					px.DropReplies(false)
				}
				note("heal", p.name, time.Now())
			case "restart":
				// Noted before: the store forgets its locks when it dies.
				note("restart", "store", time.Now())
				if err := o.Restart(); err != nil {
					nemErr = err
				}
				note("up", "store", time.Now())
			case "bounce":
				t := time.Now()
				member, err := o.Bounce()
				if err != nil {
					nemErr = err
				}
				note("bounce", strings.ReplaceAll(member, " ", "_"), t)
			case "terminate":
				t := time.Now()
				var killed int
				err := pg.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE application_name = $1) s`, "dlock:"+p.name).Scan(&killed)
				if err != nil {
					nemErr = err
				} else if killed > 0 {
					note("terminate", p.name, t)
				}
			}
		}
	}

	// Wait for the clients: each finishes its section after the deadline.
	grace := time.NewTimer(time.Until(deadline) + 10*o.TTL + o.MaxWork + 15*time.Second)
	defer grace.Stop()
	mu.Lock()
	procs := append([]*proc(nil), all...)
	mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-grace.C:
			grace.Reset(0)
			note("kill", p.name, p.kill())
			if o.Logf != nil {
				o.Logf("client %s did not finish; killed", p.name)
			}
		}
	}
	os.WriteFile(filepath.Join(o.Dir, "nemesis.log"), nemesis.Bytes(), 0o644)

	var logs [][]Event
	for _, p := range procs {
		f, err := os.Open(p.log)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		evs, err := Parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.log, err)
		}
		logs = append(logs, evs)
		if o.Logf != nil {
			if b, _ := os.ReadFile(filepath.Join(o.Dir, p.name+".err")); len(b) > 0 {
				o.Logf("client %s wrote %d bytes to stderr (%s)", p.name, len(b), filepath.Join(o.Dir, p.name+".err"))
			}
		}
	}
	nem, err := Parse(&nemesis)
	if err != nil {
		return nil, err
	}
	lim := Limits{Bound: o.Bound, TTL: o.TTL, Slack: o.Slack, Linearizability: o.Linearizability}
	return &Result{Report: CheckLimits(logs, nem, lim), Opts: o}, nemErr
}

// rewriteHosts replaces each host:port of a store URL with f's answer.
func rewriteHosts(raw string, f func(string) (string, error)) (string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", fmt.Errorf("torture: no scheme in store URL")
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		n, err := f(h)
		if err != nil {
			return "", err
		}
		out = append(out, n)
	}
	return scheme + "://" + userinfo + strings.Join(out, ",") + tail, nil
}

// poll calls cond until it is true or limit has passed.
func poll(limit time.Duration, cond func() bool) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Microsecond)
	}
	return cond()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// pickHolder picks a client whose log says it holds a lock (its last line
// is enter or write), or any client when none does after a few tries.
func pickHolder(rnd *rand.Rand, slots []*proc) int {
	for range 20 {
		i := rnd.IntN(len(slots))
		if holding(slots[i].log) {
			return i
		}
	}
	return rnd.IntN(len(slots))
}

// pickNonHolder picks a client whose log says it does not hold a lock,
// or any client when none does after a few tries.
func pickNonHolder(rnd *rand.Rand, slots []*proc) int {
	for range 20 {
		i := rnd.IntN(len(slots))
		if !holding(slots[i].log) {
			return i
		}
	}
	return rnd.IntN(len(slots))
}

func holding(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	off := max(st.Size()-256, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return false
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	last := lines[len(lines)-1]
	return strings.HasPrefix(last, "enter ") || strings.HasPrefix(last, "write ")
}

// waitStopped polls /proc until pid is in state T (stopped).
func waitStopped(pid int, limit time.Duration) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'T' || b[i+2] == 't') {
			return true
		}
		time.Sleep(100 * time.Microsecond)
	}
	return false
}
