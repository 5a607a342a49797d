package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CronOptions configure [RunCron].
type CronOptions struct {
	LayerCommon
	Offsets []time.Duration // one process per offset: its clock's skew
	Every   time.Duration   // the job runs @every Every
	Ticks   int             // ticks counted (the run lasts a little longer)
	MinHold time.Duration   // the job's MinHold; 0: cron's default (Every/2)
	MaxHold time.Duration   // the job's MaxHold (the lock's TTL)
	Work    time.Duration   // job time is uniform in [0, Work]
}

// CronResult is what [RunCron] saw.
type CronResult struct {
	Procs int
	// Skew is the largest difference between two processes' clocks;
	// MinHold the bound it must stay under.
	Skew, MinHold time.Duration
	// Ticks counted (those every process was up for), runs of them,
	// duplicate runs (runs beyond the first of a tick), ticks run more
	// than once, and ticks nobody ran.
	Ticks, Runs, Duplicates, DupTicks, Missed int
	// Concurrent counts duplicate runs that overlapped the tick's first
	// run in time (the others ran after it had ended).
	Concurrent int
	// Lost counts runs whose lock was lost while they ran.
	Lost int
	// Delays are, for every run, how late it entered the job after its
	// replica's clock said the tick had come: the timer's lateness plus
	// the acquire. A duplicate whose own delay exceeds MinHold − Skew is
	// explained by it (LateDuplicates): with a smaller delay the replica
	// could only have got the tick if the first runner's lock had ended
	// early. Duplicates − LateDuplicates must be 0 while Skew < MinHold.
	Delays         []time.Duration
	LateDuplicates int
	Examples       []string
}

// RunCron runs one cron replica per offset, each with its clock skewed by
// its offset (cron.Options.Now), with a job @every o.Every, and counts the
// runs of each tick in the window every replica was up for.
func RunCron(ctx context.Context, o CronOptions) (*CronResult, error) {
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x2545f4914f6cdd1d))
	run := fmt.Sprintf("C%d", o.Seed%1_000_000)
	prefix := fmt.Sprintf("torture-cron-%s-%x/", run, time.Now().UnixNano()&0xffffff)
	minHold := o.MinHold
	if minHold == 0 {
		minHold = o.Every / 2
	}
	var skew, lead time.Duration
	lo, hi := slices.Min(o.Offsets), slices.Max(o.Offsets)
	skew = hi - lo
	lead = max(hi, -lo)
	lp := newLayerProcs(&o.LayerCommon)
	offsets := map[string]time.Duration{}
	// Processes start within the first seconds; the deadline is far
	// enough for Ticks ticks after all are ready.
	deadline := time.Now().Add(15*time.Second + time.Duration(o.Ticks+3)*o.Every)
	var names []string
	for i, off := range o.Offsets {
		p, err := lp.spawn(LayerConfig{Role: RoleCron, Name: layerName(run+"r", i, 1), URL: o.URL, Key: prefix,
			TTL: o.MaxHold, Work: o.Work, Deadline: deadline, Offset: off, Spec: "@every " + o.Every.String(), MinHold: o.MinHold,
			Seed: rnd.Uint64()})
		if err != nil {
			lp.stopAll(10 * time.Second)
			return nil, err
		}
		names = append(names, p.cfg.Name)
		offsets[p.cfg.Name] = off
	}
	if !lp.waitFor(15*time.Second, func() bool { return lp.readyAll(names) }) {
		lp.stopAll(10 * time.Second)
		return nil, errors.New("torture: cron processes did not start")
	}
	// The first tick counted: one every replica waits for in full.
	first := time.Now().Add(lead + o.Every).Truncate(o.Every).Add(o.Every)
	last := first.Add(time.Duration(o.Ticks-1) * o.Every)
	if last.Add(lead + o.Every).After(deadline) {
		lp.stopAll(10 * time.Second)
		return nil, errors.New("torture: cron processes started too late")
	}
	// Wait until the last counted tick's runs are over, then stop.
	select {
	case <-time.After(time.Until(last.Add(lead + minHold + o.Work + o.Every))): // the schedule under test
	case <-ctx.Done():
		lp.stopAll(10 * time.Second)
		return nil, ctx.Err()
	}
	lp.stopAll(10 * time.Second)

	res := &CronResult{Procs: len(o.Offsets), Skew: skew, MinHold: minHold, Ticks: o.Ticks}
	type span struct {
		client     string
		start, end int64
	}
	runs := map[int64][]span{}
	lp.mu.Lock()
	for name, evs := range lp.events {
		open := map[string]int{}
		for _, ev := range evs {
			tick, err := strconv.ParseInt(strings.TrimPrefix(ev.Key, "tick-"), 10, 64)
			if err != nil {
				continue
			}
			switch ev.Op {
			case "enter":
				open[ev.Key] = len(runs[tick])
				runs[tick] = append(runs[tick], span{client: name, start: ev.T, end: 1<<63 - 1})
			case "lost":
				if tick >= first.UnixNano() && tick <= last.UnixNano() {
					res.Lost++
				}
			case "exit":
				if j, ok := open[ev.Key]; ok {
					runs[tick][j].end = ev.T
				}
			}
		}
	}
	lp.mu.Unlock()
	// delay is how late a run entered after its replica's clock said t.
	delay := func(r span, t time.Time) time.Duration {
		return time.Duration(r.start - t.Add(-offsets[r.client]).UnixNano())
	}
	for t := first; !t.After(last); t = t.Add(o.Every) {
		rs := runs[t.UnixNano()]
		res.Runs += len(rs)
		for _, r := range rs {
			res.Delays = append(res.Delays, delay(r, t))
		}
		switch {
		case len(rs) == 0:
			res.Missed++
		case len(rs) > 1:
			res.DupTicks++
			res.Duplicates += len(rs) - 1
			slices.SortFunc(rs, func(a, b span) int { return int(a.start - b.start) })
			for _, r := range rs[1:] {
				if r.start < rs[0].end {
					res.Concurrent++
				}
				if skew < minHold && delay(r, t) > minHold-skew {
					res.LateDuplicates++
				}
			}
			if len(res.Examples) < 5 {
				var who []string
				for _, r := range rs {
					who = append(who, fmt.Sprintf("%s (clock %+v) at %+v, %v late", r.client, offsets[r.client],
						time.Duration(r.start-t.UnixNano()).Round(time.Millisecond), delay(r, t).Round(time.Millisecond)))
				}
				res.Examples = append(res.Examples, fmt.Sprintf("tick %s ran %d times: %s", t.UTC().Format("15:04:05.000"), len(rs), strings.Join(who, ", ")))
			}
		}
	}
	return res, nil
}
