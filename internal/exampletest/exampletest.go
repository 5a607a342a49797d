// Package exampletest runs the example programs as their users would: it
// builds the command in the current directory and runs it.
package exampletest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer safe for concurrent writes and reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// RunBinary builds the command in the current directory and runs it as a
// user would, on mem://, with args; it sends Ctrl-C (SIGINT) once the output
// matches interruptAt (unless nil), and returns the output once the command
// has exited with status 0. It skips under -short.
func RunBinary(t *testing.T, interruptAt *regexp.Regexp, args ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the command")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go command to build the example with")
	}
	bin := filepath.Join(t.TempDir(), "example")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "DLOCK_URL=")
	var out Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if interruptAt != nil {
		for deadline := time.Now().Add(10 * time.Second); !interruptAt.MatchString(out.String()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-exited
				t.Fatalf("no %q within 10s:\n%s", interruptAt, out.String())
			}
		}
		cmd.Process.Signal(os.Interrupt)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("still running after 15s:\n%s", out.String())
	}
	return out.String()
}
