package torture

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Limits are what [CheckLimits] judges a history against.
type Limits struct {
	// Bound is how long a client may go on after its loss signal.
	Bound time.Duration
	// TTL is the locks' TTL; with Slack, how long a lock nobody knows of
	// (an acquire whose reply was lost, a killed holder's, a release that
	// failed) may keep others out. 0 disables the refusal check and the
	// linearizability check.
	TTL, Slack time.Duration
	// Linearizability is the time porcupine may spend checking the
	// history (all keys together); 0 skips it.
	Linearizability time.Duration
}

// CheckLimits is [Check] with the checks that need the locks' TTL: the
// refusal check (every "not acquired" must be explained by a holder, by
// an ambiguous acquire within TTL + Slack of its end, or by a killed client
// within TTL + Slack of its kill) and the linearizability of each key's
// history of acquires and releases against a mutex (porcupine).
func CheckLimits(clients [][]Event, nemesis []Event, lim Limits) *Report {
	r, h := check(clients, nemesis, lim.Bound)
	if lim.TTL > 0 {
		h.lim = lim
		h.refusals(r)
		if lim.Linearizability > 0 {
			r.Linearizable = h.linearizable(r, lim.Linearizability)
		}
	}
	return r
}

// history is what the refusal and linearizability checks need, gathered
// by check.
type history struct {
	lim      Limits
	sections []*section
	tries    []Event               // failed acquire attempts
	kills    map[string]int64      // client → time of its kill
	lastT    map[string]int64      // client → time of its last log event
	faults   map[string][][2]int64 // client → cut and drop intervals
	pauses   map[string][][2]int64 // client → frozen intervals
	restarts [][2]int64            // restart, up (a store that forgets)
	keys     map[string]struct{}   // every key seen
	rels     map[*section]Event    // the release that followed a section
}

// extend is when a lock possibly left behind at t (by an attempt or a
// release that failed while sent at t0) is gone at the latest: TTL + Slack
// after t or after the end of the client's network fault covering t0.
func (h *history) extend(client string, t0, t int64) int64 {
	end := t
	for _, f := range h.faults[client] {
		if f[0] <= t && f[1] >= t0 {
			end = max(end, f[1])
		}
	}
	return end + int64(h.lim.TTL+h.lim.Slack)
}

// holdEnd is when the store may have stopped holding s's lock at the
// latest: the release's reply, or the lock's expiry when the release
// failed or the client was killed.
func (h *history) holdEnd(s *section) int64 {
	if rel, ok := h.rels[s]; ok {
		if rel.Result == "error" {
			return h.extend(s.client, rel.T0, rel.T)
		}
		return rel.T
	}
	if k, ok := h.kills[s.client]; ok && k >= s.enter {
		return k + int64(h.lim.TTL+h.lim.Slack)
	}
	return math.MaxInt64
}

// beliefEnd is the end of s's belief as the mutex model sees it: the
// first pause of its client cuts it (a frozen process believes nothing).
func (h *history) beliefEnd(s *section) int64 {
	end := s.end
	for _, p := range h.pauses[s.client] {
		if p[0] >= s.enter && p[0] < end {
			end = p[0]
		}
	}
	return end
}

// duringRestart tells whether an attempt ran while the store was being
// restarted (after the restart was noted, before it was up again): a lock
// it may have taken was forgotten with the server.
func (h *history) duringRestart(t Event) bool {
	for _, rs := range h.restarts {
		if t.T0 >= rs[0] && t.T <= rs[1] {
			return true
		}
	}
	return false
}

// overlapsRestart tells whether an attempt overlapped a restart of the
// store (from its noting, before the kill, to the server's return).
func (h *history) overlapsRestart(t Event) bool {
	for _, rs := range h.restarts {
		if t.T0 <= rs[1] && t.T >= rs[0] {
			return true
		}
	}
	return false
}

// throughFault tells whether an attempt spanned the start of a network
// fault (cut, lost replies) of its client.
func (h *history) throughFault(t Event) bool {
	for _, f := range h.faults[t.Client] {
		if f[0] >= t.T0 && f[0] <= t.T {
			return true
		}
	}
	return false
}

// refusals counts the "not acquired" answers that no possible holder
// explains.
func (h *history) refusals(r *Report) {
	type window struct{ from, to int64 }
	wins := map[string][]window{}
	for _, s := range h.sections {
		wins[s.key] = append(wins[s.key], window{s.tryStart, h.holdEnd(s)})
	}
	var busy []Event
	for _, t := range h.tries {
		switch {
		case t.Result == "busy" && h.overlapsRestart(t):
			// The store was going down or coming up: a dying server
			// still refuses for the locks of its dead sessions.
		case t.Result == "busy" && !h.throughFault(t):
			busy = append(busy, t)
		case t.Result == "busy":
			// A refusal whose attempt spanned a lost reply or a cut: the
			// client's library may have sent the acquire again after the
			// first send took the lock. Counted apart; it may have left
			// an orphan, like an ambiguous attempt.
			r.RefusalsThroughFault++
			wins[t.Key] = append(wins[t.Key], window{t.T0, h.extend(t.Client, t.T0, t.T)})
		default:
			wins[t.Key] = append(wins[t.Key], window{t.T0, h.extend(t.Client, t.T0, t.T)})
		}
	}
	for c, k := range h.kills {
		for key := range h.keys {
			wins[key] = append(wins[key], window{h.lastT[c], k + int64(h.lim.TTL+h.lim.Slack)})
		}
	}
	byKey := map[string][]Event{}
	for _, b := range busy {
		byKey[b.Key] = append(byKey[b.Key], b)
	}
	for key, bs := range byKey {
		ws := wins[key]
		sort.Slice(ws, func(i, j int) bool { return ws[i].from < ws[j].from })
		sort.Slice(bs, func(i, j int) bool { return bs[i].T < bs[j].T })
		maxTo, j := int64(math.MinInt64), 0
		for _, b := range bs {
			for j < len(ws) && ws[j].from <= b.T {
				maxTo = max(maxTo, ws[j].to)
				j++
			}
			if maxTo < b.T0 {
				r.UnexplainedRefusals++
				r.problem("key %s: %s was refused at %d..%d while no one could hold it", key, b.Client, b.T0, b.T)
			}
		}
	}
}

// A mutex operation: acquire (by id), release or expiry of id, or a
// restart of the store, which forgets every lock.
type mutexOp struct {
	kind byte // 'a' acquire, 'r' release or expiry, 'z' restart
	id   int
}

// Acquire outcomes.
const (
	outOK      = "ok"
	outBusy    = "busy"
	outUnknown = "?"
)

// mutexModel is a lock: state 0 is free, otherwise the id of the holder.
// An acquire whose outcome is unknown may or may not have taken effect.
func mutexModel() porcupine.Model {
	m := porcupine.NondeterministicModel{
		Init: func() []any { return []any{0} },
		Step: func(state, input, output any) []any {
			s, in := state.(int), input.(mutexOp)
			switch in.kind {
			case 'a':
				switch output {
				case outOK:
					if s == 0 {
						return []any{in.id}
					}
				case outBusy:
					if s != 0 {
						return []any{s}
					}
				default:
					if s == 0 {
						return []any{0, in.id}
					}
					return []any{s}
				}
				return nil
			case 'r':
				if s == in.id {
					return []any{0}
				}
				return []any{s}
			default:
				return []any{0}
			}
		},
		DescribeOperation: func(input, output any) string {
			in := input.(mutexOp)
			return fmt.Sprintf("%c%d→%v", in.kind, in.id, output)
		},
	}
	return m.ToModel()
}

// linearizable checks each key's history against the mutex model.
func (h *history) linearizable(r *Report, budget time.Duration) string {
	ops := h.ops()
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	end := time.Now().Add(budget)
	model := mutexModel()
	var illegal, unknown []string
	for _, k := range keys {
		left := time.Until(end)
		if left <= 0 {
			unknown = append(unknown, k)
			continue
		}
		res, info := porcupine.CheckOperationsVerbose(model, ops[k], left)
		switch res {
		case porcupine.Illegal:
			illegal = append(illegal, k)
			r.problem("key %s: not linearizable at %s", k, stuckAt(ops[k], info))
		case porcupine.Unknown:
			unknown = append(unknown, k)
		}
	}
	switch {
	case len(illegal) > 0:
		return fmt.Sprintf("illegal (%d of %d keys: %s)", len(illegal), len(keys), strings.Join(illegal, " "))
	case len(unknown) > 0:
		return fmt.Sprintf("unknown (%d of %d keys not decided in %v)", len(unknown), len(keys), budget)
	}
	return fmt.Sprintf("ok (%d keys)", len(keys))
}

// ops is each key's history of mutex operations.
func (h *history) ops() map[string][]porcupine.Operation {
	ops := map[string][]porcupine.Operation{}
	id := 0
	add := func(key string, call, ret int64, in mutexOp, out string) {
		ops[key] = append(ops[key], porcupine.Operation{Input: in, Call: call, Output: out, Return: max(ret, call)})
	}
	for _, s := range h.sections {
		id++
		out := outOK
		for _, p := range h.pauses[s.client] {
			if p[0] <= s.enter && p[1] >= s.tryStart {
				// Frozen while acquiring: the lock may have expired before
				// the client knew it had it; the model cannot tell.
				out = outUnknown
			}
		}
		add(s.key, s.tryStart, s.enter, mutexOp{'a', id}, out)
		// The store may let the lock go TTL after the acquire began, even
		// before its holder heard of it (a reply that came after the TTL);
		// whether a holder believed beyond that is the overlap check's
		// business, not the store's.
		add(s.key, min(h.beliefEnd(s), s.tryStart+int64(h.lim.TTL)), h.holdEnd(s), mutexOp{'r', id}, "")
	}
	for _, t := range h.tries {
		id++
		if t.Result != "busy" && h.duringRestart(t) || t.Result == "busy" && h.overlapsRestart(t) {
			continue // see refusals
		}
		if t.Result == "busy" && !h.throughFault(t) {
			add(t.Key, t.T0, t.T, mutexOp{'a', id}, outBusy)
			continue
		}
		// An error, or a refusal through a fault (see refusals): the
		// attempt may have taken the lock, which then expires.
		add(t.Key, t.T0, t.T, mutexOp{'a', id}, outUnknown)
		// The orphan may expire from the attempt's start on (an attempt
		// can last longer than the TTL). Ordered before its attempt, the
		// expiry is void and the orphan would stay: porcupine then finds
		// no room for the next successful acquire and tries the other
		// order; only refusals until that acquire can be explained so
		// (the refusal check is exact there).
		add(t.Key, t.T0, h.extend(t.Client, t.T0, t.T), mutexOp{'r', id}, "")
	}
	for c, k := range h.kills { // an attempt the kill cut short
		for key := range h.keys {
			id++
			add(key, h.lastT[c], k, mutexOp{'a', id}, outUnknown)
			add(key, h.lastT[c], k+int64(h.lim.TTL+h.lim.Slack), mutexOp{'r', id}, "")
		}
	}
	for _, rs := range h.restarts {
		for key := range h.keys {
			add(key, rs[0], rs[1], mutexOp{kind: 'z'}, "")
		}
	}
	return ops
}

// stuckAt describes the earliest-returning operation that the longest
// partial linearization porcupine found could not take in.
func stuckAt(ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var longest []int
	for _, part := range info.PartialLinearizations() {
		for _, l := range part {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	in := make([]bool, len(ops))
	for _, id := range longest {
		if id >= 0 && id < len(ops) {
			in[id] = true
		}
	}
	best := -1
	for i, op := range ops {
		if !in[i] && (best < 0 || op.Return < ops[best].Return) {
			best = i
		}
	}
	if best < 0 {
		return "?"
	}
	op := ops[best]
	m := op.Input.(mutexOp)
	return fmt.Sprintf("%c#%d→%v [%d, %d] (%d ops linearized)", m.kind, m.id, op.Output, op.Call, op.Return, len(longest))
}
