package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dlockgo/dlock/backends"
)

// OnceOptions configure [RunOnce].
type OnceOptions struct {
	LayerCommon
	Workers   int           // worker processes
	Keys      int           // job keys; every worker calls once.Do on all of them
	TTL       time.Duration // once's lock TTL
	Work      time.Duration // job time is uniform in [0, Work]
	KillEvery time.Duration // time between kills of a worker in the middle of a job
	Kills     int           // kills in all
	Bound     time.Duration // allowed work after a loss signal
}

// OnceResult is what [RunOnce] saw.
type OnceResult struct {
	// Report is [Check] on the job runs (enter to exit, the job key as lock
	// key) and their fenced writes.
	*Report
	Workers, Keys int
	// Kills counts workers killed with a job running.
	Kills int
	// Runs counts job runs started (enter records); Reruns counts the keys
	// whose job started more than once (after a kill).
	Runs, Reruns int
	// Completions is the number of keys by how many runs completed them
	// (a logged "ran", or the token of the store's record when its runner
	// was killed before it could log it): every key must be in
	// Completions[1].
	Completions map[int]int
	// Incomplete counts keys without a completion record at the end;
	// Mismatch counts keys whose record's token differs from the run
	// that logged "ran", or from the token an AlreadyDone call reported.
	Incomplete, Mismatch int
	// States counts the outcomes of once.Do: ran, already, busy, fenced,
	// error.
	States map[string]int
}

// RunOnce runs o.Workers processes that each call once.Do on every key (in
// their own order), while a nemesis kills -9 workers in the middle of a job
// and starts them again (they start over, finding the finished keys
// done). At the end every key must have been completed exactly once, and
// the store's records must agree with the logs.
func RunOnce(ctx context.Context, o OnceOptions) (*OnceResult, error) {
	if o.Register == "" {
		o.Register = o.URL
	}
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x94d049bb133111eb))
	run := fmt.Sprintf("O%d", o.Seed%1_000_000)
	base := fmt.Sprintf("torture-once-%s-%x-k", run, time.Now().UnixNano()&0xffffff)
	keys := make([]string, o.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", base, i)
	}
	if err := PrepareRegister(ctx, o.Register, keys); err != nil {
		return nil, fmt.Errorf("prepare register: %w", err)
	}
	cfg, err := backends.ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	records, err := backends.OpenRecords(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer records.Close()

	lp := newLayerProcs(&o.LayerCommon)
	slots := make([]*layerProc, o.Workers)
	incarnation := make([]int, o.Workers)
	spawn := func(i int) error {
		incarnation[i]++
		order := slices.Concat(keys[i*len(keys)/o.Workers:], keys[:i*len(keys)/o.Workers])
		p, err := lp.spawn(LayerConfig{Role: RoleOnce, Name: layerName(run+"w", i, incarnation[i]), URL: o.URL,
			Register: o.Register, Key: "torture-once/", Keys: order, TTL: o.TTL, Work: o.Work, Seed: rnd.Uint64()})
		slots[i] = p
		return err
	}
	for i := range o.Workers {
		if err := spawn(i); err != nil {
			lp.stopAll(10 * time.Second)
			return nil, err
		}
	}
	res := &OnceResult{Workers: o.Workers, Keys: o.Keys, Completions: map[int]int{}, States: map[string]int{}}
	// inJob reports whether name is inside once.Do with its job started:
	// running it, or finished and about to record its completion.
	inJob := func(name string) bool {
		switch lp.last[name] {
		case "enter", "write", "exit":
			return true
		}
		return false
	}
	allDone := func() bool {
		for _, p := range slots {
			select {
			case <-p.done:
			default:
				return false
			}
		}
		return true
	}
	var nemErr error
	for res.Kills < o.Kills && !allDone() {
		t := time.NewTimer(o.KillEvery)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			lp.stopAll(10 * time.Second)
			return nil, ctx.Err()
		}
		// A worker in the middle of a job, chosen at random among them.
		var victims []int
		lp.waitFor(time.Second, func() bool {
			victims = victims[:0]
			for i, p := range slots {
				if inJob(p.cfg.Name) {
					victims = append(victims, i)
				}
			}
			return len(victims) > 0
		})
		if len(victims) == 0 {
			continue
		}
		i := victims[rnd.IntN(len(victims))]
		lp.kill(slots[i])
		res.Kills++
		if err := spawn(i); err != nil {
			nemErr = err
			break
		}
	}
	lp.waitAll(time.Duration(o.Keys)*(o.Work+o.TTL) + 2*time.Minute)
	res.Report = lp.check(o.Bound)

	lp.mu.Lock()
	ran := map[string][]uint64{}
	already := map[string][]uint64{}
	starts := map[string]int{}
	for _, l := range lp.lines {
		if l.op != "result" {
			continue
		}
		res.States[l.state]++
		switch l.state {
		case "ran":
			ran[l.key] = append(ran[l.key], l.token)
		case "already":
			already[l.key] = append(already[l.key], l.token)
		}
	}
	for _, evs := range lp.events {
		for _, ev := range evs {
			if ev.Op == "enter" {
				res.Runs++
				starts[ev.Key]++
			}
		}
	}
	lp.mu.Unlock()
	for _, k := range keys {
		if starts[k] > 1 {
			res.Reruns++
		}
		done, by, err := records.Done(ctx, k)
		if err != nil {
			return nil, err
		}
		tokens := slices.Clone(ran[k])
		if done && !slices.Contains(tokens, by) {
			tokens = append(tokens, by) // its runner was killed before it logged "ran"
		}
		res.Completions[len(tokens)]++
		if !done {
			res.Incomplete++
			res.problem("key %s: no completion record", k)
			continue
		}
		for _, tok := range slices.Concat(ran[k], already[k]) {
			if tok != by {
				res.Mismatch++
				res.problem("key %s: record by token %d, a worker reported token %d", k, by, tok)
			}
		}
		if len(tokens) > 1 {
			res.problem("key %s completed by tokens %v", k, tokens)
		}
	}
	if nemErr == nil && res.Kills < o.Kills {
		nemErr = errors.New("torture: the workers finished before every kill was made; give them more keys")
	}
	return res, nemErr
}
