package torture

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Event is one line of a client's or the nemesis's log. Client lines:
//
//	enter KEY CLIENT TOKEN T_ACQUIRE_START T_ENTER
//	write KEY CLIENT TOKEN T_SEND T_REPLY ok|rejected|error
//	lost  KEY CLIENT TOKEN T
//	exit  KEY CLIENT TOKEN T
//	try   KEY CLIENT 0 T_SEND T_REPLY busy|error   (a failed acquire attempt)
//	rel   KEY CLIENT TOKEN T_SEND T_REPLY ok|notheld|error   (the release after exit)
//
// Nemesis lines:
//
//	kill      CLIENT T
//	stop      CLIENT T
//	cont      CLIENT T
//	terminate CLIENT T
//	restart   store T   (the store's server was killed; it forgets its locks)
//	up        store T   (the restarted server accepts connections again)
//	bounce    MEMBER T  (a member of a replicated store was killed and started
//	                     again; its locks must survive)
//	cut       CLIENT T  (the client's connections to the store fall silent)
//	drop      CLIENT T  (the store's replies to the client are discarded)
//	heal      CLIENT T  (end of a cut or of lost replies)
//
// Times are Unix nanoseconds of the machine's wall clock, which every
// process on the machine shares.
type Event struct {
	Op     string
	Key    string
	Client string
	Token  uint64
	T      int64 // the event's time (enter: T_ENTER; write: T_REPLY)
	T0     int64 // enter: T_ACQUIRE_START; write: T_SEND
	Result string
}

// Parse reads log lines. Blank lines are skipped; a malformed line is an
// error, except a truncated last line (a client killed mid-write).
func Parse(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	var pendingErr error
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if pendingErr != nil {
			return nil, pendingErr
		}
		ev, err := parseLine(line)
		if err != nil {
			pendingErr = err // fatal only if a line follows it
			continue
		}
		out = append(out, ev)
	}
	return out, sc.Err()
}

func parseLine(line string) (Event, error) {
	f := strings.Fields(line)
	bad := func() (Event, error) { return Event{}, fmt.Errorf("torture: bad log line %q", line) }
	if len(f) == 0 {
		return bad()
	}
	num := func(s string) (int64, bool) {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	ev := Event{Op: f[0]}
	switch f[0] {
	case "kill", "stop", "cont", "terminate", "restart", "up", "bounce", "cut", "drop", "heal":
		if len(f) != 3 {
			return bad()
		}
		t, ok := num(f[2])
		if !ok {
			return bad()
		}
		ev.Client, ev.T = f[1], t
		return ev, nil
	case "enter", "write", "lost", "exit", "try", "rel":
	default:
		return bad()
	}
	want := map[string]int{"enter": 6, "write": 7, "lost": 5, "exit": 5, "try": 7, "rel": 7}[f[0]]
	if len(f) != want {
		return bad()
	}
	tok, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return bad()
	}
	ev.Key, ev.Client, ev.Token = f[1], f[2], tok
	var ok1, ok2 bool
	switch f[0] {
	case "enter":
		ev.T0, ok1 = num(f[4])
		ev.T, ok2 = num(f[5])
	case "write", "try", "rel":
		ev.T0, ok1 = num(f[4])
		ev.T, ok2 = num(f[5])
		ev.Result = f[6]
	default:
		ev.T, ok1 = num(f[4])
		ok2 = true
	}
	if !ok1 || !ok2 {
		return bad()
	}
	return ev, nil
}

// Format renders ev as a log line (without the newline).
func Format(ev Event) string {
	switch ev.Op {
	case "enter":
		return fmt.Sprintf("enter %s %s %d %d %d", ev.Key, ev.Client, ev.Token, ev.T0, ev.T)
	case "write", "try", "rel":
		return fmt.Sprintf("%s %s %s %d %d %d %s", ev.Op, ev.Key, ev.Client, ev.Token, ev.T0, ev.T, ev.Result)
	case "lost", "exit":
		return fmt.Sprintf("%s %s %s %d %d", ev.Op, ev.Key, ev.Client, ev.Token, ev.T)
	default:
		return fmt.Sprintf("%s %s %d", ev.Op, ev.Client, ev.T)
	}
}

// Report is what [Check] found.
type Report struct {
	Acquisitions int // critical sections entered
	// Overlaps counts sections that overlapped another section of the same
	// key while both clients were running and neither had been told of a
	// loss. Must be 0 for a store that promises exclusion.
	Overlaps int
	// PauseOverlaps counts overlaps in which one holder had been frozen
	// (SIGSTOP) during its section and the overlap lies after its SIGCONT,
	// before it noticed the loss: the window no lease can close, which
	// fencing exists for. MaxPauseWindow is the longest such window.
	PauseOverlaps  int
	MaxPauseWindow time.Duration
	// TerminateOverlaps counts overlaps in which one holder's client had
	// its database session terminated (pg_terminate_backend) within
	// TerminateWindow before or during its section: the store freed the
	// lock before the holder was told. They are counted apart from
	// Overlaps so that the two can be judged separately.
	TerminateOverlaps int
	// RestartOverlaps counts overlaps that began after a restart of the
	// store's server (without persistence) that came after the earlier
	// section's acquire started: the store forgot the lock. Expected for such a store; fencing must catch
	// the stale writes (StaleAccepted must still be 0).
	RestartOverlaps int
	// TokenRegressions counts pairs of sections on one key where the later
	// one (its acquire started after the other's returned) has a token
	// that is not larger.
	TokenRegressions int
	// Writes to the fenced register, how many it rejected, and how many
	// stale writes it accepted: a write accepted although a write with a
	// larger token had been accepted before it was sent. Must be 0.
	Writes, Rejected, WriteErrors, StaleAccepted int
	// Losses are the sections whose client was told of the loss; LateWork
	// counts those that sent a register write more than the bound after
	// it (new work after the signal; a write already in flight when it
	// came is not late work), and MaxAfterLoss is the longest time from
	// the signal to the section's exit, writes in flight included.
	Losses       int
	LateWork     int
	MaxAfterLoss time.Duration
	// SignalLatencies are the times from a fault (SIGCONT after a pause,
	// pg_terminate_backend, a store restart) to the loss signal of the
	// section it hit.
	SignalLatencies []time.Duration
	// Faults counts nemesis events by kind (kill, stop, terminate).
	Faults map[string]int
	// Unterminated counts sections with neither exit, loss nor kill: they
	// are taken to last to the end of the run.
	Unterminated int
	// MaxTakeover is the longest time from a kill -9 of a holder to the
	// next entry into the key it held.
	MaxTakeover time.Duration
	// Refusals counts acquire attempts answered "not acquired", Ambiguous
	// those that failed with an error (the acquire may have been applied:
	// a lost reply), ReleaseErrors the releases that failed.
	Refusals, Ambiguous, ReleaseErrors int
	// UnexplainedRefusals counts "not acquired" answers given while no
	// one could hold the key: no section of it, no ambiguous attempt within
	// TTL + slack before, no killed client within TTL + slack. One means
	// the store refused for a lock nobody was told of (say, an acquire it
	// applied twice) or kept an orphan beyond its TTL. Must be 0; counted
	// by [CheckLimits] only.
	UnexplainedRefusals int
	// RefusalsThroughFault counts "not acquired" answers to attempts that
	// spanned the start of a cut or of lost replies to their client. The
	// client library re-sends a command whose connection broke (go-redis
	// does); the first send may have taken the lock, which kept others
	// out until its TTL while the client, refused at the re-send, believed
	// it had nothing. Counted apart from UnexplainedRefusals, and treated
	// like ambiguous attempts (a possible orphan) by the other checks.
	RefusalsThroughFault int
	// Linearizable is porcupine's verdict on the keys' histories against a
	// mutex model ("ok (…)", "illegal (…)", "unknown (…)"), empty when not
	// run (see [CheckLimits]).
	Linearizable string
	// Examples describes the first problems found.
	Examples []string
}

// OK tells whether the report has no violation of mutual exclusion,
// fencing or promptness (pause and restart overlaps are not violations;
// see [Report.PauseOverlaps] and [Report.RestartOverlaps]).
func (r *Report) OK() bool {
	return r.Overlaps == 0 && r.TerminateOverlaps == 0 && r.TokenRegressions == 0 && r.StaleAccepted == 0 && r.LateWork == 0 &&
		r.UnexplainedRefusals == 0
}

// P99Signal is the 99th percentile of SignalLatencies (0 when empty).
func (r *Report) P99Signal() time.Duration {
	if len(r.SignalLatencies) == 0 {
		return 0
	}
	s := slices.Clone(r.SignalLatencies)
	slices.Sort(s)
	i := int(math.Ceil(0.99*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// Bound95 is the 95% upper bound 3/n on the rate of overlapping
// acquisitions when none was seen in n (the rule of three), or -1 when
// there were overlaps (Overlaps, TerminateOverlaps or RestartOverlaps;
// pause overlaps are outside what a lease can promise and are not
// counted) or no acquisitions.
func (r *Report) Bound95() float64 {
	if r.Overlaps > 0 || r.TerminateOverlaps > 0 || r.RestartOverlaps > 0 || r.Acquisitions == 0 {
		return -1
	}
	return 3 / float64(r.Acquisitions)
}

func (r *Report) problem(format string, args ...any) {
	if len(r.Examples) < 10 {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// TerminateWindow is how long before a section's acquire started a
// pg_terminate_backend is still attributed to it (the nemesis notes the time
// before its query runs).
const TerminateWindow = 100 * time.Millisecond

type section struct {
	key, client string
	token       uint64
	acqStart    int64
	tryStart    int64 // start of the attempt that succeeded, at the latest
	enter       int64
	end         int64 // belief end: exit, loss, kill, or MaxInt64
	lost        int64 // 0 = never told
	exit        int64 // 0 = no exit logged
}

type segment struct {
	s          *section
	start, end int64
	postPause  bool
}

// Check merges client logs and the nemesis log and checks them. bound is
// how long a client may go on after its loss signal.
func Check(clients [][]Event, nemesis []Event, bound time.Duration) *Report {
	r, _ := check(clients, nemesis, bound)
	return r
}

func check(clients [][]Event, nemesis []Event, bound time.Duration) (*Report, *history) {
	r := &Report{Faults: map[string]int{}}
	h := &history{kills: map[string]int64{}, lastT: map[string]int64{}, faults: map[string][][2]int64{},
		keys: map[string]struct{}{}, rels: map[*section]Event{}}
	openFault := map[string]int64{}
	var bounces []int64
	kills := map[string]int64{}
	pauses := map[string][][2]int64{}
	var terminates []Event
	var restarts []int64
	openStop := map[string]int64{}
	for _, ev := range nemesis {
		r.Faults[ev.Op]++
		switch ev.Op {
		case "kill":
			kills[ev.Client] = ev.T
		case "stop":
			openStop[ev.Client] = ev.T
		case "cont":
			if s, ok := openStop[ev.Client]; ok {
				pauses[ev.Client] = append(pauses[ev.Client], [2]int64{s, ev.T})
				delete(openStop, ev.Client)
			}
		case "terminate":
			terminates = append(terminates, ev)
		case "restart":
			restarts = append(restarts, ev.T)
			h.restarts = append(h.restarts, [2]int64{ev.T, math.MaxInt64})
		case "up":
			if n := len(h.restarts); n > 0 && h.restarts[n-1][1] == math.MaxInt64 {
				h.restarts[n-1][1] = ev.T
			}
		case "bounce":
			bounces = append(bounces, ev.T)
		case "cut", "drop":
			openFault[ev.Client] = ev.T
		case "heal":
			if s, ok := openFault[ev.Client]; ok {
				h.faults[ev.Client] = append(h.faults[ev.Client], [2]int64{s, ev.T})
				delete(openFault, ev.Client)
			}
		}
	}
	for c, s := range openFault {
		h.faults[c] = append(h.faults[c], [2]int64{s, math.MaxInt64})
	}
	delete(r.Faults, "up")
	delete(r.Faults, "heal")
	h.kills, h.pauses = kills, pauses
	for c, s := range openStop { // stopped and never continued: frozen to the end
		pauses[c] = append(pauses[c], [2]int64{s, math.MaxInt64})
	}
	delete(r.Faults, "cont")

	var sections []*section
	var writes []Event
	for _, log := range clients {
		open := map[string]*section{}
		var exited *section           // the last section exited, awaiting its rel
		lastTry := map[string]int64{} // key → end of the last failed attempt
		for _, ev := range log {
			h.keys[ev.Key] = struct{}{}
			h.lastT[ev.Client] = max(h.lastT[ev.Client], ev.T)
			switch ev.Op {
			case "try":
				lastTry[ev.Key] = ev.T
				h.tries = append(h.tries, ev)
				if ev.Result == "busy" {
					r.Refusals++
				} else {
					r.Ambiguous++
				}
			case "rel":
				if exited != nil && exited.key == ev.Key {
					h.rels[exited] = ev
				}
				exited = nil
				if ev.Result == "error" {
					r.ReleaseErrors++
				}
			case "enter":
				s := &section{key: ev.Key, client: ev.Client, token: ev.Token, acqStart: ev.T0, tryStart: max(ev.T0, lastTry[ev.Key]),
					enter: ev.T, end: math.MaxInt64}
				open[ev.Key] = s
				sections = append(sections, s)
			case "write":
				writes = append(writes, ev)
			case "lost":
				if s := open[ev.Key]; s != nil && s.lost == 0 {
					s.lost = ev.T
				}
			case "exit":
				if s := open[ev.Key]; s != nil {
					s.exit = ev.T
					delete(open, ev.Key)
					exited = s
				}
			}
		}
		for _, s := range open {
			if t, ok := kills[s.client]; ok && t >= s.enter {
				s.exit = t
			} else {
				r.Unterminated++
				r.problem("section %s/%s token %d has no end", s.key, s.client, s.token)
			}
		}
	}
	r.Acquisitions = len(sections)
	h.sections = sections

	byKey := map[string][]*section{}
	for _, s := range sections {
		if s.exit != 0 {
			s.end = s.exit
		}
		if s.lost != 0 {
			r.Losses++
			s.end = min(s.end, s.lost)
			if s.exit != 0 && time.Duration(s.exit-s.lost) > r.MaxAfterLoss {
				r.MaxAfterLoss = time.Duration(s.exit - s.lost)
			}

		}
		byKey[s.key] = append(byKey[s.key], s)
	}

	// Signal latencies: the SIGCONT (or termination) that preceded the loss
	// signal of a section.
	for _, s := range sections {
		if s.lost == 0 {
			continue
		}
		var from int64
		for _, p := range pauses[s.client] {
			if p[1] >= s.acqStart && p[1] <= s.lost && p[1] > from {
				from = p[1]
			}
		}
		for _, t := range terminates {
			if t.Client == s.client && t.T >= s.acqStart && t.T <= s.lost && t.T > from {
				from = t.T
			}
		}
		for _, t := range append(restarts, bounces...) {
			if t >= s.enter && t <= s.lost && t > from {
				from = t
			}
		}
		for _, f := range h.faults[s.client] {
			if f[0] >= s.acqStart && f[0] <= s.lost && f[0] > from {
				from = f[0]
			}
		}
		if from != 0 {
			r.SignalLatencies = append(r.SignalLatencies, time.Duration(s.lost-from))
		}
	}

	for key, ss := range byKey {
		// Token order: a section whose acquire started after another's
		// returned must have a larger token.
		sort.Slice(ss, func(i, j int) bool { return ss[i].enter < ss[j].enter })
		var maxTok uint64
		var maxTokEnter int64
		byStart := slices.Clone(ss)
		sort.Slice(byStart, func(i, j int) bool { return byStart[i].acqStart < byStart[j].acqStart })
		j := 0
		for _, s := range byStart {
			for j < len(ss) && ss[j].enter < s.acqStart {
				if ss[j].token > maxTok {
					maxTok, maxTokEnter = ss[j].token, ss[j].enter
				}
				j++
			}
			if maxTok != 0 && s.token <= maxTok {
				r.TokenRegressions++
				r.problem("key %s: %s got token %d after a section with token %d entered at %d", key, s.client, s.token, maxTok, maxTokEnter)
			}
		}

		// Overlaps, on the running parts of each section.
		var segs []segment
		for _, s := range ss {
			segs = append(segs, running(s, pauses[s.client])...)
		}
		sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
		var prev *segment
		for i := range segs {
			g := &segs[i]
			if prev != nil && prev.s != g.s && g.start < prev.end {
				end := min(g.end, prev.end)
				if restarted(prev.s.acqStart, g.start, restarts) {
					r.RestartOverlaps++
				} else if terminated(g.s, terminates) || terminated(prev.s, terminates) {
					r.TerminateOverlaps++
					r.problem("key %s: %s (token %d) and %s (token %d) both held it for %v after a pg_terminate_backend", key,
						prev.s.client, prev.s.token, g.s.client, g.s.token, time.Duration(end-g.start))
				} else if g.postPause || prev.postPause {
					r.PauseOverlaps++
					pp := g
					if !g.postPause {
						pp = prev
					}
					if w := time.Duration(pp.end - pp.start); w > r.MaxPauseWindow && pp.end != math.MaxInt64 {
						r.MaxPauseWindow = w
					}
				} else {
					r.Overlaps++
					r.problem("key %s: %s (token %d) and %s (token %d) both held it for %v", key,
						prev.s.client, prev.s.token, g.s.client, g.s.token, time.Duration(end-g.start))
				}
			}
			if prev == nil || g.end > prev.end {
				prev = g
			}
		}

		// Takeover after a kill.
		for i, s := range ss {
			if t, ok := kills[s.client]; ok && s.exit == t && s.lost == 0 {
				for _, n := range ss[i+1:] {
					if n.enter > t {
						if d := time.Duration(n.enter - t); d > r.MaxTakeover {
							r.MaxTakeover = d
						}
						break
					}
				}
			}
		}
	}

	// Fenced register: a write accepted after a larger token's write had
	// been accepted (its reply received before this one was sent).
	wk := map[string][]Event{}
	type sectionID struct {
		key, client string
		token       uint64
	}
	byID := map[sectionID]*section{}
	for _, s := range sections {
		byID[sectionID{s.key, s.client, s.token}] = s
	}
	late := map[*section]bool{}
	for _, w := range writes {
		if s := byID[sectionID{w.Key, w.Client, w.Token}]; s != nil && s.lost != 0 && w.T0 > s.lost+int64(bound) && !late[s] {
			late[s] = true
			r.LateWork++
			r.problem("%s/%s token %d sent a write %v after its loss signal", s.key, s.client, s.token, time.Duration(w.T0-s.lost))
		}
	}
	for _, w := range writes {
		r.Writes++
		switch w.Result {
		case "rejected":
			r.Rejected++
		case "error":
			r.WriteErrors++
		}
		if w.Result == "ok" {
			wk[w.Key] = append(wk[w.Key], w)
		}
	}
	for key, ws := range wk {
		byReply := slices.Clone(ws)
		sort.Slice(byReply, func(i, j int) bool { return byReply[i].T < byReply[j].T })
		sort.Slice(ws, func(i, j int) bool { return ws[i].T0 < ws[j].T0 })
		var maxTok uint64
		j := 0
		for _, w := range ws {
			for j < len(byReply) && byReply[j].T < w.T0 {
				maxTok = max(maxTok, byReply[j].Token)
				j++
			}
			if w.Token < maxTok {
				r.StaleAccepted++
				r.problem("key %s: register accepted token %d from %s after token %d", key, w.Token, w.Client, maxTok)
			}
		}
	}
	return r, h
}

// restarted tells whether the store restarted in [from, to].
func restarted(from, to int64, restarts []int64) bool {
	for _, t := range restarts {
		if t >= from && t <= to {
			return true
		}
	}
	return false
}

func terminated(s *section, terminates []Event) bool {
	for _, t := range terminates {
		if t.Client == s.client && t.T >= s.acqStart-int64(TerminateWindow) && t.T <= s.end {
			return true
		}
	}
	return false
}

// running cuts the pauses of its client out of a section's belief interval
// [enter, end]. A part that starts after a SIGCONT that came after the
// acquire started is marked postPause.
func running(s *section, pauses [][2]int64) []segment {
	out := []segment{{s: s, start: s.enter, end: s.end}}
	for _, p := range pauses {
		if p[1] < s.acqStart || p[0] > s.end {
			continue
		}
		var next []segment
		for _, g := range out {
			if p[1] <= g.start || p[0] >= g.end {
				next = append(next, g)
				continue
			}
			if p[0] > g.start {
				next = append(next, segment{s: s, start: g.start, end: p[0], postPause: g.postPause})
			}
			if p[1] < g.end {
				next = append(next, segment{s: s, start: p[1], end: g.end, postPause: true})
			}
		}
		out = next
	}
	// A part that starts after the acquire began but whose client was
	// paused between acquire start and enter is post-pause too.
	for i := range out {
		for _, p := range pauses {
			if p[1] >= s.acqStart && p[1] <= out[i].start {
				out[i].postPause = true
			}
		}
	}
	return out
}
