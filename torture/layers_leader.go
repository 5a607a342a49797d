package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/backends"
)

// LeaderOptions configure [RunLeader].
type LeaderOptions struct {
	LayerCommon
	Procs  int           // candidate processes, each behind its own proxy
	TTL    time.Duration // leadership TTL
	Faults []string      // resign, kill, stop, cut (a partition of the leader)
	Rounds int           // faults of each kind
	Write  time.Duration // time between a leader's fenced writes
	Bound  time.Duration // allowed work after a loss signal
}

// LeaderResult is what [RunLeader] saw.
type LeaderResult struct {
	// Report is [Check] on the leaderships (enter at election, exit when
	// fn returned) and their fenced writes, the election key as lock key.
	*Report
	// Terms is the number of leaderships; TermRegressions counts
	// leaderships, in order of election, whose term is not larger than
	// the previous one's.
	Terms, TermRegressions int
	// Injected counts faults by kind; NoFailover those after which no
	// new leader was elected in time.
	Injected   map[string]int
	NoFailover int
	// Failover is, per fault kind, the time from the fault to the next
	// leader's election (its enter record).
	Failover map[string][]time.Duration
	// Stepdown is, per fault kind, the time from the fault (cut) or its
	// end (stop: SIGCONT) to the old leader's loss signal or exit.
	Stepdown map[string][]time.Duration
	// LateStepdowns counts, per fault kind, old leaders that stepped down
	// only after the next leader was elected: for a cut, an overlap of two
	// leaders that both believed they led.
	LateStepdowns map[string]int
}

// leading returns the live process that leads by its own log (its last
// enter has no exit yet) with the largest term (lp.mu held).
func (lp *layerProcs) leading() (string, uint64, int64) {
	var who string
	var term uint64
	var at int64
	for name, evs := range lp.events {
		if lp.killed[name] {
			continue
		}
		for i := len(evs) - 1; i >= 0; i-- {
			ev := evs[i]
			if ev.Op == "exit" || ev.Op == "lost" {
				break
			}
			if ev.Op == "enter" {
				if ev.Token > term {
					who, term, at = name, ev.Token, ev.T
				}
				break
			}
		}
	}
	return who, term, at
}

// elected returns the first enter with a term larger than after (lp.mu
// held).
func (lp *layerProcs) elected(after uint64) (Event, bool) {
	var first Event
	for _, evs := range lp.events {
		for _, ev := range evs {
			if ev.Op == "enter" && ev.Token > after && (first.Op == "" || ev.Token < first.Token) {
				first = ev
			}
		}
	}
	return first, first.Op != ""
}

// ended returns when name's leadership of term ended: its lost record, or
// its exit (lp.mu held).
func (lp *layerProcs) ended(name string, term uint64) (int64, bool) {
	for _, ev := range lp.events[name] {
		if (ev.Op == "lost" || ev.Op == "exit") && ev.Token == term {
			return ev.T, true
		}
	}
	return 0, false
}

// RunLeader runs o.Procs processes that campaign for one election key
// (package leader), each leader writing its term through the fenced
// register every o.Write, while a nemesis forces failovers: Resign
// (SIGUSR1), kill -9 of the leader, SIGSTOP of the leader until another is
// elected (beyond the TTL), and a partition of the leader from the store
// (each process reaches the store through its own [Proxy]) until another
// is elected.
func RunLeader(ctx context.Context, o LeaderOptions) (*LeaderResult, error) {
	if o.Register == "" {
		o.Register = o.URL
	}
	cfg, err := backends.ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	if len(cfg.Addrs) != 1 {
		return nil, fmt.Errorf("torture: the leader scenario needs a store URL with one address, not %v", cfg.Addrs)
	}
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5851f42d4c957f2d))
	run := fmt.Sprintf("L%d", o.Seed%1_000_000)
	key := fmt.Sprintf("torture-leader-%s-%x", run, time.Now().UnixNano()&0xffffff)
	if err := PrepareRegister(ctx, o.Register, []string{key}); err != nil {
		return nil, fmt.Errorf("prepare register: %w", err)
	}
	lp := newLayerProcs(&o.LayerCommon)
	proxies := make([]*Proxy, o.Procs)
	defer func() {
		for _, p := range proxies {
			if p != nil {
				p.Close()
			}
		}
	}()
	slots := make([]*layerProc, o.Procs)
	incarnation := make([]int, o.Procs)
	spawn := func(i int) error {
		incarnation[i]++
		p, err := lp.spawn(LayerConfig{Role: RoleLeader, Name: layerName(run+"p", i, incarnation[i]),
			URL: strings.Replace(o.URL, cfg.Addrs[0], proxies[i].Addr(), 1), Register: o.Register, Key: key,
			TTL: o.TTL, Work: o.Write, Seed: rnd.Uint64()})
		slots[i] = p
		return err
	}
	var names []string
	for i := range o.Procs {
		if proxies[i], err = NewProxy(cfg.Addrs[0]); err != nil {
			return nil, err
		}
		if err := spawn(i); err != nil {
			return nil, err
		}
		names = append(names, slots[i].cfg.Name)
	}
	defer lp.stopAll(10 * time.Second)
	if !lp.waitFor(60*time.Second, func() bool { return lp.readyAll(names) }) {
		return nil, errors.New("torture: leader processes did not start")
	}

	res := &LeaderResult{Injected: map[string]int{}, Failover: map[string][]time.Duration{}, Stepdown: map[string][]time.Duration{}, LateStepdowns: map[string]int{}}
	limit := 5*o.TTL + 20*time.Second // for an election
	var nemErr error
	for n := range o.Rounds * len(o.Faults) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fault := o.Faults[n%len(o.Faults)]
		var who string
		var term uint64
		if !lp.waitFor(limit, func() bool { who, term, _ = lp.leading(); return who != "" }) {
			nemErr = errors.New("torture: no leader")
			break
		}
		// Let the leader work a little: a random 0–4 writes.
		time.Sleep(time.Duration(rnd.Int64N(int64(4*o.Write) + 1))) // the nemesis's schedule
		i := slices.IndexFunc(slots, func(p *layerProc) bool { return p.cfg.Name == who })
		p := slots[i]
		var next Event
		newLeader := func() bool {
			var ok bool
			next, ok = lp.elected(term)
			return ok
		}
		var t0, from time.Time // the fault, and what step-down is measured from
		switch fault {
		case "resign":
			t0 = time.Now()
			p.cmd.Process.Signal(syscall.SIGUSR1)
		case "kill":
			t0 = time.Now()
			lp.kill(p)
			if err := spawn(i); err != nil {
				nemErr = err
			}
		case "stop":
			p.cmd.Process.Signal(syscall.SIGSTOP)
			if !waitStopped(p.cmd.Process.Pid, time.Second) {
				p.cmd.Process.Signal(syscall.SIGCONT)
				continue
			}
			t0 = time.Now()
			lp.note("stop", who, t0)
			lp.waitFor(limit, newLeader)
			// Stay frozen until the new leader has written, so that the
			// old one's first write after waking meets a higher term.
			lp.waitFor(time.Second, func() bool { return lp.wrote(next.Client, next.Token) })
			from = time.Now()
			lp.note("cont", who, from)
			p.cmd.Process.Signal(syscall.SIGCONT)
		case "cut":
			t0 = time.Now()
			from = t0
			proxies[i].Cut()
			lp.waitFor(limit, newLeader)
			lp.waitFor(limit, func() bool { _, ok := lp.ended(who, term); return ok })
			proxies[i].Heal()
		default:
			return nil, fmt.Errorf("torture: unknown leader fault %q", fault)
		}
		res.Injected[fault]++
		if !lp.waitFor(limit, newLeader) {
			res.NoFailover++
			o.logf("%s of %s (term %d): no new leader within %v", fault, who, term, limit)
			continue
		}
		res.Failover[fault] = append(res.Failover[fault], time.Duration(next.T-t0.UnixNano()))
		if !from.IsZero() {
			var end int64
			if lp.waitFor(limit, func() bool { var ok bool; end, ok = lp.ended(who, term); return ok }) {
				res.Stepdown[fault] = append(res.Stepdown[fault], time.Duration(end-from.UnixNano()))
				if end > next.T {
					res.LateStepdowns[fault]++
				}
			}
		}
	}
	lp.stopAll(10 * time.Second)
	res.Report = lp.check(o.Bound)
	lp.mu.Lock()
	var enters []Event
	for _, evs := range lp.events {
		for _, ev := range evs {
			if ev.Op == "enter" {
				enters = append(enters, ev)
			}
		}
	}
	lp.mu.Unlock()
	slices.SortFunc(enters, func(a, b Event) int { return int(a.T - b.T) })
	res.Terms = len(enters)
	for j := 1; j < len(enters); j++ {
		if enters[j].Token <= enters[j-1].Token {
			res.TermRegressions++
			res.problem("term %d (%s) elected after term %d (%s)", enters[j].Token, enters[j].Client, enters[j-1].Token, enters[j-1].Client)
		}
	}
	return res, nemErr
}

// wrote reports whether name wrote term through the register (lp.mu held).
func (lp *layerProcs) wrote(name string, term uint64) bool {
	for _, ev := range lp.events[name] {
		if ev.Op == "write" && ev.Token == term {
			return true
		}
	}
	return false
}
