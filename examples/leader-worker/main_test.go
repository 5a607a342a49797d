package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/exampletest"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// waitFor polls out until re matches, and returns the submatches.
func waitFor(t *testing.T, out *exampletest.Buffer, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
	}
	t.Fatalf("no %q within %v in:\n%s", re, within, out.String())
	return nil
}

func TestRun_InMemory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var out exampletest.Buffer
	if err := run(ctx, &out, options{id: "a", key: "t"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"in-memory store", "DLOCK_URL", "a  elected, term 1: the worker starts",
		"a  term 1: work item 2 done", "a  term 1 over: leader: resigned", "a  stopped"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestRun_HandoverOnRedis runs two copies against the real Redis: the
// standby sees the leader, and takes over at once — well before the 5s TTL
// — when the leader stops and resigns.
func TestRun_HandoverOnRedis(t *testing.T) {
	t.Parallel()
	url := testenv.URL(t, testenv.Redis)
	o := options{url: url, key: fmt.Sprintf("example-test/%d/leader", time.Now().UnixNano())}
	var outs [2]exampletest.Buffer
	var cancels [2]context.CancelFunc
	var wg sync.WaitGroup
	defer wg.Wait()
	var m []string // r0's election
	for i := range outs {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cancels[i] = cancel
		o := o
		o.id = fmt.Sprint("r", i)
		wg.Go(func() {
			if err := run(ctx, &outs[i], o); err != nil {
				t.Errorf("%s: %v", o.id, err)
			}
		})
		if i == 0 {
			m = waitFor(t, &outs[0], regexp.MustCompile(`r0  elected, term (\d+)`), 5*time.Second)
		}
	}
	waitFor(t, &outs[1], regexp.MustCompile(`r1  standing by; the leader is r0, term `+m[1]), 5*time.Second)

	cancels[0]()
	stopped := time.Now()
	m1 := waitFor(t, &outs[1], regexp.MustCompile(`r1  elected, term (\d+)`), 3*time.Second)
	took := time.Since(stopped)
	term0, _ := strconv.ParseUint(m[1], 10, 64)
	term1, _ := strconv.ParseUint(m1[1], 10, 64)
	if term1 <= term0 {
		t.Errorf("new term %d ≤ old term %d", term1, term0)
	}
	t.Logf("handover in %v: term %d → %d", took, term0, term1)
	cancels[1]()
}

// TestBinary runs the command until it leads, then presses Ctrl-C: it
// resigns and exits.
func TestBinary(t *testing.T) {
	t.Parallel()
	out := exampletest.RunBinary(t, regexp.MustCompile(`x  elected, term 1`), "-id", "x")
	if !strings.Contains(out, "x  term 1 over: leader: resigned") || !strings.Contains(out, "x  stopped") {
		t.Errorf("output:\n%s", out)
	}
}
