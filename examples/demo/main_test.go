package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// summaryRow extracts a value from the demo's summary table.
func summaryRow(t *testing.T, out, label string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(label) + `\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q row in the summary:\n%s", label, out)
	}
	return m[1]
}

func TestDemo_InMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, "", 10*time.Second); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	if got := summaryRow(t, s, "cron ticks run twice (duplicates)"); got != "0" {
		t.Errorf("duplicates = %s", got)
	}
	if got := summaryRow(t, s, "leader changes"); got == "0" {
		t.Errorf("no leader change after the crash:\n%s", s)
	}
	if got := summaryRow(t, s, "once: runs / already done"); got != "1 / 2" {
		t.Errorf("once = %s, want 1 / 2", got)
	}
	if got := summaryRow(t, s, "http requests by status"); got != "1×409, 7×200" {
		t.Errorf("http = %s, want 1×409, 7×200", got)
	}
}

func TestDemo_OnRealRedis(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, testenv.URL(t, testenv.Redis), 10*time.Second); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	if got := summaryRow(t, s, "cron ticks run twice (duplicates)"); got != "0" {
		t.Errorf("duplicates = %s", got)
	}
	if got := summaryRow(t, s, "leader changes"); got == "0" {
		t.Errorf("no leader change after the crash:\n%s", s)
	}
	if got := summaryRow(t, s, "once: runs / already done"); got != "1 / 2" {
		t.Errorf("once = %s, want 1 / 2", got)
	}
	if got := summaryRow(t, s, "two leaders at once"); got != "0" {
		t.Errorf("two leaders at once = %s", got)
	}
}
