package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLeader_OneRunsAndTheStandbyTakesOver(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		dir, key := t.TempDir(), randomKey(t)
		log := filepath.Join(dir, "log")
		// Each term appends "token pid" and runs until stopped.
		script := `echo "$DLOCK_TOKEN $$" >> "$1"; while :; do sleep 0.05; done`
		var ps []*proc
		for _, id := range []string{"replica-a", "replica-b"} {
			ps = append(ps, start(t, s.url, "leader", "--ttl", "2s", "--grace", "1s", "--identity", id, "--key", key, "--",
				"sh", "-c", script, "sh", log))
		}
		first := strings.Fields(fileHas(t, log, 15*time.Second))
		// The leader is the dlock whose stderr says so.
		var leader, standby *proc
		waitFor(t, 5*time.Second, "a leader's notice", func() bool {
			for i, p := range ps {
				if strings.Contains(p.stderr.String(), "leading") {
					leader, standby = p, ps[1-i]
					return true
				}
			}
			return false
		})
		if strings.Contains(standby.stderr.String(), "leading") {
			t.Fatalf("both lead:\n%s\n%s", leader.stderr, standby.stderr)
		}

		// SIGTERM the leader: it stops its command and exits; the standby
		// takes over with a larger term.
		if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := leader.wait(10 * time.Second); code == exitStore || code == exitUsage {
			t.Errorf("the leader exited %d on SIGTERM; stderr: %s", code, leader.stderr)
		}
		firstPID, _ := strconv.Atoi(first[1])
		if syscall.Kill(firstPID, 0) == nil {
			t.Error("the first leader's command still runs after dlock exited")
		}
		var lines []string
		waitFor(t, 15*time.Second, "the standby's term", func() bool {
			b, _ := os.ReadFile(log)
			lines = strings.Split(strings.TrimSpace(string(b)), "\n")
			return len(lines) == 2
		})
		second := strings.Fields(lines[1])
		t1, _ := strconv.ParseUint(first[0], 10, 64)
		t2, _ := strconv.ParseUint(second[0], 10, 64)
		if t2 <= t1 {
			t.Errorf("terms %d then %d: want an increase", t1, t2)
		}
		if err := standby.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		standby.wait(10 * time.Second)
	})
}

func TestLeader_OnceExitsWithTheCommandsCode(t *testing.T) {
	t.Parallel()
	code, _, stderr := dlock(t, "mem://", "leader", "--once", "--key", "k", "--", "sh", "-c", "exit 5")
	if code != 5 {
		t.Errorf("dlock leader --once: exit %d, want 5; stderr: %s", code, stderr)
	}
}
