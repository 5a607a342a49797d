package torture_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlockgo/dlock/torture"
)

func parse(t *testing.T, s string) []torture.Event {
	t.Helper()
	evs, err := torture.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func check(t *testing.T, nemesis string, clients ...string) *torture.Report {
	t.Helper()
	var logs [][]torture.Event
	for _, c := range clients {
		logs = append(logs, parse(t, c))
	}
	return torture.Check(logs, parse(t, nemesis), 50*time.Millisecond)
}

func TestCheck_CleanHistory(t *testing.T) {
	r := check(t, "",
		`enter k a 1 0 10
write k a 1 11 12 ok
exit k a 1 20
enter k a 3 40 50
write k a 3 51 52 ok
exit k a 3 60`,
		`enter k b 2 15 25
write k b 2 26 27 ok
exit k b 2 30
enter j b 1 31 32
exit j b 1 33`)
	if !r.OK() || r.Acquisitions != 4 || r.Writes != 3 || r.Unterminated != 0 {
		t.Fatalf("report %+v", r)
	}
	if got := r.Bound95(); got != 0.75 {
		t.Errorf("Bound95 %v, want 3/4", got)
	}
}

func TestCheck_Overlap(t *testing.T) {
	r := check(t, "",
		"enter k a 1 0 10\nexit k a 1 30",
		"enter k b 2 5 20\nexit k b 2 40")
	if r.Overlaps != 1 || r.OK() || r.Bound95() != -1 {
		t.Fatalf("report %+v", r)
	}
}

func TestCheck_LossEndsTheSection(t *testing.T) {
	// a is told of the loss at 15, before b enters at 20, and stops at 16.
	r := check(t, "",
		"enter k a 1 0 10\nlost k a 1 15\nexit k a 1 16",
		"enter k b 2 12 20\nexit k b 2 40")
	if !r.OK() || r.Losses != 1 || r.MaxAfterLoss != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestCheck_LateWorkAfterLoss(t *testing.T) {
	ms := int64(time.Millisecond)
	// A write in flight when the signal came is not late work (the bound
	// is 50ms); a write sent after the bound is.
	r := check(t, "", "enter k a 1 0 10\nwrite k a 1 15 "+itoa(20+90*ms)+" ok\nlost k a 1 20\nexit k a 1 "+itoa(20+100*ms))
	if r.LateWork != 0 || r.MaxAfterLoss != 100*time.Millisecond {
		t.Fatalf("report %+v", r)
	}
	r = check(t, "", "enter k a 1 0 10\nlost k a 1 20\nwrite k a 1 "+itoa(20+60*ms)+" "+itoa(20+61*ms)+" rejected\nexit k a 1 "+itoa(20+100*ms))
	if r.LateWork != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestCheck_TokenRegression(t *testing.T) {
	// b's acquire started (25) after a's returned (10), yet its token is smaller.
	r := check(t, "",
		"enter k a 5 0 10\nexit k a 5 20",
		"enter k b 4 25 30\nexit k b 4 40")
	if r.TokenRegressions != 1 {
		t.Fatalf("report %+v", r)
	}
	// Concurrent acquires (b started before a returned) may come in either order.
	r = check(t, "",
		"enter k a 5 0 10\nexit k a 5 20",
		"enter k b 4 5 30\nexit k b 4 40")
	if r.TokenRegressions != 0 {
		t.Fatalf("report %+v", r)
	}
}

func TestCheck_KillEndsTheSectionAndTakeoverIsMeasured(t *testing.T) {
	r := check(t, "kill a 15\n",
		"enter k a 1 0 10\nwrite k a 1 11 12 ok",
		"enter k b 2 12 515\nexit k b 2 520")
	if !r.OK() || r.Unterminated != 0 || r.Faults["kill"] != 1 || r.MaxTakeover != 500 {
		t.Fatalf("report %+v", r)
	}
	// Without the kill the section never ends and overlaps b's.
	r = check(t, "",
		"enter k a 1 0 10\nwrite k a 1 11 12 ok",
		"enter k b 2 12 515\nexit k b 2 520")
	if r.Unterminated != 1 || r.Overlaps != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestCheck_PausedHolder(t *testing.T) {
	// a is frozen from 20 to 100; b holds the key from 50 to 110; a wakes,
	// writes (rejected) and learns of the loss at 103.
	r := check(t, "stop a 20\ncont a 100\n",
		"enter k a 1 0 10\nwrite k a 1 11 12 ok\nwrite k a 1 101 102 rejected\nlost k a 1 103\nexit k a 1 104",
		"enter k b 2 40 50\nwrite k b 2 51 52 ok\nexit k b 2 110")
	if r.Overlaps != 0 || r.PauseOverlaps != 1 || r.MaxPauseWindow != 3 || r.Rejected != 1 || r.StaleAccepted != 0 {
		t.Fatalf("report %+v", r)
	}
	if len(r.SignalLatencies) != 1 || r.SignalLatencies[0] != 3 || r.P99Signal() != 3 {
		t.Fatalf("signal latencies %v", r.SignalLatencies)
	}
}

func TestCheck_StaleWriteAccepted(t *testing.T) {
	// b's token 2 was accepted (reply at 52) before a sent token 1 at 60.
	r := check(t, "stop a 20\ncont a 55\n",
		"enter k a 1 0 10\nwrite k a 1 60 61 ok\nlost k a 1 62\nexit k a 1 63",
		"enter k b 2 40 50\nwrite k b 2 51 52 ok\nexit k b 2 58")
	if r.StaleAccepted != 1 || r.OK() {
		t.Fatalf("report %+v", r)
	}
}

func TestCheck_TerminateOverlapsAreCountedApart(t *testing.T) {
	r := check(t, "terminate a 5\n",
		"enter k a 1 8 10\nexit k a 1 30",
		"enter k b 2 12 20\nexit k b 2 40")
	if r.Overlaps != 0 || r.TerminateOverlaps != 1 || r.Faults["terminate"] != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestParse(t *testing.T) {
	for _, ev := range []torture.Event{
		{Op: "enter", Key: "k", Client: "c", Token: 7, T0: 1, T: 2},
		{Op: "write", Key: "k", Client: "c", Token: 7, T0: 3, T: 4, Result: "rejected"},
		{Op: "lost", Key: "k", Client: "c", Token: 7, T: 5},
		{Op: "exit", Key: "k", Client: "c", Token: 7, T: 6},
		{Op: "kill", Client: "c", T: 7},
	} {
		got := parse(t, torture.Format(ev)+"\n")
		if len(got) != 1 || got[0] != ev {
			t.Errorf("round trip of %+v gave %+v", ev, got)
		}
	}
	// A truncated last line (a client killed mid-write) is dropped; a bad
	// line in the middle is an error.
	if evs := parse(t, "exit k c 1 5\nenter k c 2 6"); len(evs) != 1 {
		t.Errorf("truncated last line: %+v", evs)
	}
	if _, err := torture.Parse(strings.NewReader("bogus\nexit k c 1 5\n")); err == nil {
		t.Error("a bad line in the middle was accepted")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestCheck_RestartOverlapsAreCountedApart(t *testing.T) {
	// The store forgot a's lock when it restarted at 15; b took it at 20.
	r := check(t, "restart store 15\n",
		"enter k a 1 0 10\nwrite k a 1 25 26 rejected\nlost k a 1 27\nexit k a 1 28",
		"enter k b 2 18 20\nwrite k b 2 21 22 ok\nexit k b 2 40")
	if r.Overlaps != 0 || r.RestartOverlaps != 1 || r.Bound95() != -1 || r.P99Signal() != 12 || r.Rejected != 1 || r.StaleAccepted != 0 || r.Faults["restart"] != 1 {
		t.Fatalf("report %+v", r)
	}
}

func checkLimits(t *testing.T, nemesis string, clients ...string) *torture.Report {
	t.Helper()
	var logs [][]torture.Event
	for _, c := range clients {
		logs = append(logs, parse(t, c))
	}
	return torture.CheckLimits(logs, parse(t, nemesis), torture.Limits{Bound: 50, TTL: 100, Slack: 10, Linearizability: 10 * time.Second})
}

func TestCheckLimits_RefusalExplainedByAHolder(t *testing.T) {
	r := checkLimits(t, "",
		"enter k a 1 0 10\nexit k a 1 30\nrel k a 1 30 31 ok",
		"try k b 0 12 14 busy\nenter k b 2 32 40\nexit k b 2 50\nrel k b 2 50 51 ok")
	if !r.OK() || r.Refusals != 1 || r.UnexplainedRefusals != 0 || r.Linearizable != "ok (1 keys)" {
		t.Fatalf("report %+v", r)
	}
}

// A refusal while no one holds the key, no attempt was ambiguous and no
// client was killed: the store said "not acquired" for a lock nobody had.
func TestCheckLimits_UnexplainedRefusal(t *testing.T) {
	r := checkLimits(t, "",
		"enter k a 1 0 10\nexit k a 1 30\nrel k a 1 30 31 ok",
		"try k b 0 40 42 busy")
	if r.OK() || r.UnexplainedRefusals != 1 || !strings.HasPrefix(r.Linearizable, "illegal") {
		t.Fatalf("report %+v", r)
	}
}

// An acquire that failed with an error (its reply lost) may have left an
// orphan lock: refusals are explained for TTL + slack after it, not later.
func TestCheckLimits_OrphanOfALostReply(t *testing.T) {
	r := checkLimits(t, "drop a 0\nheal a 20",
		"try k a 0 5 20 error",
		"try k b 0 50 52 busy\ntry k b 0 100 102 busy\nenter k b 1 125 130\nexit k b 1 140\nrel k b 1 140 141 ok")
	if !r.OK() || r.Ambiguous != 1 || r.Refusals != 2 || r.Linearizable != "ok (1 keys)" {
		t.Fatalf("report %+v", r)
	}
	r = checkLimits(t, "drop a 0\nheal a 20",
		"try k a 0 5 20 error",
		"try k b 0 200 202 busy\nenter k b 1 300 301\nexit k b 1 302\nrel k b 1 302 303 ok") // 180 after the attempt: beyond TTL + slack
	if r.UnexplainedRefusals != 1 || !strings.HasPrefix(r.Linearizable, "illegal") {
		t.Fatalf("report %+v", r)
	}
}

// Two holders at once are not linearizable; a restart of a store that
// forgets its locks in between makes them so.
func TestCheckLimits_Linearizability(t *testing.T) {
	a := "enter k a 1 0 10\nexit k a 1 60\nrel k a 1 60 61 notheld"
	b := "enter k b 2 20 30\nexit k b 2 40\nrel k b 2 40 41 ok"
	if r := checkLimits(t, "", a, b); !strings.HasPrefix(r.Linearizable, "illegal") || r.Overlaps != 1 {
		t.Fatalf("report %+v", r)
	}
	if r := checkLimits(t, "restart store 12\nup store 15", a, b); r.Linearizable != "ok (1 keys)" || r.RestartOverlaps != 1 {
		t.Fatalf("report %+v", r)
	}
}

// A partitioned holder told of its loss before another client got the key
// is a clean history.
func TestCheckLimits_CutHolderToldInTime(t *testing.T) {
	r := checkLimits(t, "cut a 20\nheal a 200",
		"enter k a 1 0 10\nlost k a 1 90\nexit k a 1 91\nrel k a 1 91 200 notheld",
		"try k b 0 30 32 busy\nenter k b 2 95 110\nexit k b 2 120\nrel k b 2 120 121 ok")
	if !r.OK() || r.Linearizable != "ok (1 keys)" || len(r.SignalLatencies) != 1 || r.SignalLatencies[0] != 70 {
		t.Fatalf("report %+v", r)
	}
}
