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
	r := check(t, "", "enter k a 1 0 10\nlost k a 1 20\nexit k a 1 "+itoa(20+100*ms))
	if r.LateWork != 1 || r.MaxAfterLoss != 100*time.Millisecond {
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
