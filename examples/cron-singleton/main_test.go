package main

import (
	"bytes"
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

// tickLine matches a tick's run: [1] replica, [2] tick, [3] token.
var tickLine = regexp.MustCompile(`(?m)^\S+ (\S+)  ran tick (\S+) \(token (\d+)\)$`)

func TestRun_InMemory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out exampletest.Buffer
	if err := run(ctx, &out, options{id: "a", keyPrefix: "t/"}); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	ticks := tickLine.FindAllStringSubmatch(s, -1)
	if len(ticks) < 2 {
		t.Fatalf("%d ticks in 5s, want ≥ 2:\n%s", len(ticks), s)
	}
	var last uint64
	for _, m := range ticks {
		token, _ := strconv.ParseUint(m[3], 10, 64)
		if m[1] != "a" || token <= last {
			t.Errorf("tick line %q: want replica a and a token > %d", m[0], last)
		}
		last = token
	}
	for _, want := range []string{"in-memory store", "set DLOCK_URL", "a  stopped"} {
		if !bytes.Contains([]byte(s), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestRun_TwoReplicasOnRedis runs two copies against the real Redis: every
// tick runs exactly once, on one of them.
func TestRun_TwoReplicasOnRedis(t *testing.T) {
	t.Parallel()
	url := testenv.URL(t, testenv.Redis)
	prefix := fmt.Sprintf("example-test/%d/", time.Now().UnixNano())
	outs := make([]exampletest.Buffer, 2)
	errs := make([]error, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() {
			errs[i] = run(ctx, &outs[i], options{url: url, id: fmt.Sprint("r", i), keyPrefix: prefix})
		})
	}
	wg.Wait()
	runs := map[string][]string{} // tick → replicas that ran it
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v\n%s", i, errs[i], outs[i].String())
		}
		for _, m := range tickLine.FindAllStringSubmatch(outs[i].String(), -1) {
			runs[m[2]] = append(runs[m[2]], m[1])
		}
	}
	if len(runs) < 2 {
		t.Errorf("%d ticks in 5s, want ≥ 2:\n%s\n%s", len(runs), outs[0].String(), outs[1].String())
	}
	for tick, by := range runs {
		if len(by) != 1 {
			t.Errorf("tick %s ran %d times, by %v", tick, len(by), by)
		}
	}
	t.Logf("ticks: %v", runs)
}

// TestBinary runs the command for -duration 3s: it runs a tick and exits.
func TestBinary(t *testing.T) {
	t.Parallel()
	out := exampletest.RunBinary(t, nil, "-id", "x", "-duration", "3s")
	if !regexp.MustCompile(`(?m)^\S+ x  ran tick \S+ \(token 1\)$`).MatchString(out) || !strings.Contains(out, "x  stopped") {
		t.Errorf("output:\n%s", out)
	}
}
