package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdScript is a child that records its token and pid, then runs until
// the file release exists.
const holdScript = `echo "$DLOCK_KEY $DLOCK_TOKEN $$" > "$1/started"; while [ ! -e "$1/release" ]; do sleep 0.02; done`

func TestRun_SecondHolderGetsTheBusyCode(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		dir, key := t.TempDir(), randomKey(t)
		a := start(t, s.url, "run", "--identity", "holder-a", "--key", key, "--", "sh", "-c", holdScript, "sh", dir)
		started := fileHas(t, filepath.Join(dir, "started"), 15*time.Second)
		f := strings.Fields(started)
		if len(f) != 3 || f[0] != key {
			t.Fatalf("the child saw %q, want DLOCK_KEY=%s, a token and a pid", started, key)
		}
		token, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || token == 0 {
			t.Fatalf("DLOCK_TOKEN = %q", f[1])
		}

		code, _, stderr := dlock(t, s.url, "run", "--key", key, "--", "sh", "-c", "echo ran > "+dir+"/b")
		if code != exitBusy {
			t.Errorf("second dlock run: exit %d, want %d (busy); stderr: %s", code, exitBusy, stderr)
		}
		if want := "is held by holder-a, token " + f[1]; !strings.Contains(stderr, want) {
			t.Errorf("second dlock run's stderr = %q, want it to contain %q", stderr, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "b")); err == nil {
			t.Error("the second command ran while the first held the lock")
		}
		if code, _, _ := dlock(t, s.url, "run", "--quiet", "--busy-code", "3", "--key", key, "--", "true"); code != 3 {
			t.Errorf("--busy-code 3: exit %d", code)
		}

		// ls while a holds the key.
		code, out, stderr := dlock(t, s.url, "ls", "--json", "--prefix", key)
		switch {
		case !s.canList:
			if code != exitStore || !strings.Contains(stderr, "cannot list") {
				t.Errorf("ls on %s: exit %d, stderr %q; want %d and 'cannot list'", s.name, code, stderr, exitStore)
			}
		case code != 0:
			t.Errorf("ls: exit %d; stderr %s", code, stderr)
		default:
			var got []lsEntry
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("ls --json: %v\n%s", err, out)
			}
			// PostgreSQL in advisory mode enforces no TTL: it reports 0.
			ttlOK := got != nil && got[0].TTLms > 0 && got[0].TTLms <= 30000 || s.freesOnDeath && got != nil && got[0].TTLms == 0
			if len(got) != 1 || got[0].Key != key || got[0].Holder != "holder-a" || got[0].Token != token || !ttlOK {
				t.Errorf("ls --json = %+v, want one entry: %s held by holder-a with token %d, 0 < TTL ≤ 30s", got, key, token)
			}
			code, out, _ := dlock(t, s.url, "ls", "--prefix", key)
			if code != 0 || !strings.Contains(out, "KEY") || !strings.Contains(out, key+"  holder-a  "+f[1]) {
				t.Errorf("ls: exit %d, output:\n%s", code, out)
			}
		}

		if s.name == "postgres" {
			plain := strings.Replace(s.url, "dlock_record_holders=true", "dlock_record_holders=false", 1)
			code, _, stderr := dlock(t, plain, "ls")
			if code != exitStore || !strings.Contains(stderr, "without ?dlock_record_holders=true") {
				t.Errorf("ls on postgres without recorded holders: exit %d, stderr %q", code, stderr)
			}
		}

		if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if code := a.wait(15 * time.Second); code != 0 {
			t.Errorf("first dlock run: exit %d; stderr: %s", code, a.stderr)
		}
		// Released: the next one runs at once.
		if code, _, stderr := dlock(t, s.url, "run", "--key", key, "--", "sh", "-c", "exit 7"); code != 7 {
			t.Errorf("after the release: exit %d, want the command's 7; stderr: %s", code, stderr)
		}
	})
}

func TestRun_WaitRunsBothOneAfterTheOther(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		dir, key := t.TempDir(), randomKey(t)
		log := filepath.Join(dir, "log")
		// Each child writes "start end token" in nanoseconds.
		script := `s=$(date +%s%N); sleep 0.3; e=$(date +%s%N); echo "$s $e $DLOCK_TOKEN" >> "$1"`
		a := start(t, s.url, "run", "--wait", "20s", "--key", key, "--", "sh", "-c", script, "sh", log)
		b := start(t, s.url, "run", "--wait", "20s", "--key", key, "--", "sh", "-c", script, "sh", log)
		for _, p := range []*proc{a, b} {
			if code := p.wait(25 * time.Second); code != 0 {
				t.Fatalf("dlock run --wait: exit %d; stderr: %s", code, p.stderr)
			}
			if strings.Contains(p.stderr.String(), "waiting") {
				t.Errorf("a status line on a stderr that is not a terminal: %q", p.stderr)
			}
		}
		data, _ := os.ReadFile(log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 2 {
			t.Fatalf("log has %d lines, want 2:\n%s", len(lines), data)
		}
		type run struct{ start, end, token uint64 }
		var runs []run
		for _, l := range lines {
			f := strings.Fields(l)
			var r run
			var err error
			for i, p := range []*uint64{&r.start, &r.end, &r.token} {
				if *p, err = strconv.ParseUint(f[i], 10, 64); err != nil {
					t.Fatalf("bad log line %q", l)
				}
			}
			runs = append(runs, r)
		}
		sort.Slice(runs, func(i, j int) bool { return runs[i].start < runs[j].start })
		if runs[1].start < runs[0].end {
			t.Errorf("the commands overlapped: %v", runs)
		}
		if runs[1].token <= runs[0].token {
			t.Errorf("tokens did not increase: %v", runs)
		}
	})
}

func TestRun_KilledHolderIsReplacedAfterTheTTL(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		dir, key := t.TempDir(), randomKey(t)
		const ttl = 2 * time.Second
		a := start(t, s.url, "run", "--ttl", ttl.String(), "--key", key, "--", "sh", "-c", holdScript, "sh", dir)
		f := strings.Fields(fileHas(t, filepath.Join(dir, "started"), 15*time.Second))
		childPID, _ := strconv.Atoi(f[2])
		t.Cleanup(func() { syscall.Kill(-childPID, syscall.SIGKILL) })

		// kill -9: dlock cannot stop its command, nor release.
		killed := time.Now()
		if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(-childPID, syscall.SIGKILL) // the orphaned command
		a.wait(5 * time.Second)

		stamp := filepath.Join(dir, "b")
		code, _, stderr := dlock(t, s.url, "run", "--wait", "20s", "--key", key, "--", "sh", "-c", `date +%s%N > "$1"`, "sh", stamp)
		if code != 0 {
			t.Fatalf("next dlock run: exit %d; stderr: %s", code, stderr)
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(fileHas(t, stamp, time.Second)), 10, 64)
		after := time.Unix(0, ns).Sub(killed)
		t.Logf("%s: the next holder ran %v after the kill", s.name, after)
		// The lock was refreshed every TTL/3 before the kill, so it had at
		// least TTL·2/3 left.
		if !s.freesOnDeath && after < ttl*2/3-100*time.Millisecond {
			t.Errorf("the next holder ran %v after the kill, before the TTL (%v) could have run out", after, ttl)
		}
		if after > ttl+5*time.Second {
			t.Errorf("the next holder ran only %v after the kill", after)
		}
	})
}

func TestRun_ExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		url  string
		args []string
		want int
		out  string // in stderr
	}{
		{"the command's code", "mem://", []string{"run", "--key", "k", "--", "sh", "-c", "exit 7"}, 7, "mem://"},
		{"killed by a signal", "mem://", []string{"run", "--key", "k", "--", "sh", "-c", "kill -9 $$"}, 128 + 9, ""},
		{"no key", "mem://", []string{"run", "--", "true"}, exitUsage, "--key is required"},
		{"no command", "mem://", []string{"run", "--key", "k"}, exitUsage, "no command"},
		{"unknown flag", "mem://", []string{"run", "--nope", "--key", "k", "--", "true"}, exitUsage, "flag provided but not defined"},
		{"bad ttl", "mem://", []string{"run", "--ttl", "0s", "--key", "k", "--", "true"}, exitUsage, "--ttl"},
		{"unknown command", "mem://", []string{"frob"}, exitUsage, "unknown command"},
		{"command not found", "mem://", []string{"run", "--key", "k", "--", "no-such-command-dlock"}, exitNoCmd, "command not found"},
		{"not executable", "mem://", []string{"run", "--key", "k", "--", "/dev/null"}, exitNoRun, "cannot run"},
		{"bad url", "postgres://u:hunter2@", []string{"run", "--key", "k", "--", "true"}, exitStore, "xxxxx"},
		{"redis down", "redis://u:hunter2@127.0.0.1:1", []string{"run", "--key", "k", "--", "true"}, exitStore, "cannot open redis://u:xxxxx@127.0.0.1:1"},
		{"etcd down", "etcd://127.0.0.1:1?dial_timeout=300ms", []string{"ls"}, exitStore, "cannot open etcd://127.0.0.1:1"},
		{"ls on mem", "mem://", []string{"ls"}, 0, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := dlock(t, tc.url, tc.args...)
			if code != tc.want || !strings.Contains(stderr, tc.out) {
				t.Errorf("dlock %q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.want, tc.out)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("the password leaked: %q", stderr)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 1 {
				t.Errorf("stderr has %d lines, want one error line (and at most a notice): %q", n+1, stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"run", "--help"}, {"leader", "-h"}, {"ls", "--help"}, {"help", "run"}, {"--help"}} {
		code, out, _ := dlock(t, "", args...)
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("dlock %q: exit %d, output:\n%s", args, code, out)
		}
		if args[0] != "--help" && !strings.Contains(out, "Exit status:") {
			t.Errorf("dlock %q does not show the exit codes", args)
		}
	}
}
