package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/testenv"
)

// TestRun_StatusLineOnATerminal runs the waiting dlock under script(1),
// which gives it a terminal.
func TestRun_StatusLineOnATerminal(t *testing.T) {
	t.Parallel()
	url := testenv.URL(t, testenv.Redis)
	if _, err := exec.LookPath("script"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("script(1) is not installed (Debian package bsdutils)")
		}
		t.Skip("script(1) is not installed")
	}
	dir, key := t.TempDir(), randomKey(t)
	a := start(t, url, "run", "--identity", "holder-a", "--key", key, "--", "sh", "-c", holdScript, "sh", dir)
	fileHas(t, filepath.Join(dir, "started"), 15*time.Second)

	line := os.Getenv(binEnv) + " run --wait 20s --key " + key + " -- true"
	b := exec.Command("script", "-qfec", line, "/dev/null")
	b.Env = append(os.Environ(), "DLOCK_URL="+url)
	out := &syncBuf{}
	b.Stdout, b.Stderr = out, out
	b.WaitDelay = time.Second
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Wait() }()
	finished := false
	defer func() {
		if !finished {
			b.Process.Kill()
			<-done
		}
	}()
	waitFor(t, 10*time.Second, "the status line", func() bool {
		return strings.Contains(out.String(), `waiting for "`+key+`" — held by holder-a, token `)
	})
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		finished = true
		if err != nil {
			t.Errorf("the waiting dlock: %v; output: %q", err, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the waiting dlock did not finish; output: %q", out)
	}
	if !strings.HasSuffix(strings.TrimRight(out.String(), "\r\n"), "\r\x1b[K") {
		t.Errorf("the status line was not cleared at the end: %q", out)
	}
	a.wait(10 * time.Second)
}
