package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
)

// The tests run the real binary, built once by TestMain into a temporary
// directory whose path they read from this variable.
const binEnv = "DLOCK_CLI_TEST_BINARY"

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "dlock-cli-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "dlock")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 1
		}
		os.Setenv(binEnv, bin)
		code := m.Run()
		if code == 0 {
			if err := leakcheck.Check(5 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return code
	}())
}

// store is a store URL for dlock, and what the store can do.
type store struct {
	name, url string
	canList   bool
	// freesOnDeath: the store frees a dead holder's lock at once (a
	// PostgreSQL session ends with its process), not after the TTL.
	freesOnDeath bool
}

// stores returns the stores under test; each subtest skips (or fails
// under CI) when its server is not configured.
func stores() []func(t *testing.T) store {
	return []func(t *testing.T) store{
		func(t *testing.T) store {
			return store{name: "redis", url: testenv.URL(t, testenv.Redis), canList: true}
		},
		func(t *testing.T) store {
			u := testenv.URL(t, testenv.Postgres)
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			return store{name: "postgres", url: u + sep + "dlock_record_holders=true", canList: true, freesOnDeath: true}
		},
		func(t *testing.T) store {
			u := testenv.URL(t, testenv.Etcd)
			if !strings.Contains(u, "://") {
				u = "etcd://" + u
			}
			return store{name: "etcd", url: u, canList: true}
		},
	}
}

var storeNames = [...]string{"redis", "postgres", "etcd"}

// forEachStore runs f as a parallel subtest per store.
func forEachStore(t *testing.T, f func(t *testing.T, s store)) {
	for i, get := range stores() {
		t.Run(storeNames[i], func(t *testing.T) {
			t.Parallel()
			f(t, get(t))
		})
	}
}

func randomKey(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	return "cli-test/" + strings.ReplaceAll(t.Name(), "/", "-") + "/" + hex.EncodeToString(b[:])
}

// syncBuf is a bytes.Buffer safe for the writes of exec and the reads of
// the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running dlock.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	done           chan struct{}
}

// start runs dlock with DLOCK_URL=url (none when url is "").
func start(t *testing.T, url string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Getenv(binEnv), args...)
	cmd.Env = append(os.Environ(), "DLOCK_URL="+url)
	p := &proc{t: t, cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	// A command orphaned by a killed dlock may keep the output pipes open.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for dlock to exit and returns its exit code (-1 when a
// signal killed it).
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("dlock %q did not exit within %v; stderr:\n%s", p.cmd.Args[1:], timeout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// dlock runs dlock to completion.
func dlock(t *testing.T, url string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, url, args...)
	code = p.wait(30 * time.Second)
	return code, p.stdout.String(), p.stderr.String()
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// fileHas polls until path exists with content, and returns it.
func fileHas(t *testing.T, path string, timeout time.Duration) string {
	t.Helper()
	var s string
	waitFor(t, timeout, path, func() bool {
		b, err := os.ReadFile(path)
		s = string(b)
		return err == nil && strings.HasSuffix(s, "\n")
	})
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
