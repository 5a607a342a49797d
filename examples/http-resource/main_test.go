package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/exampletest"
	"github.com/dlockgo/dlock/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

type reply struct {
	status     int
	token      uint64
	body       string
	retryAfter string
}

func deposit(t *testing.T, url, account string, amount int) reply {
	resp, err := http.Post(fmt.Sprintf("%s/accounts/%s/deposit?amount=%d", url, account, amount), "", nil)
	if err != nil {
		t.Error(err)
		return reply{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	token, _ := strconv.ParseUint(resp.Header.Get("Dlock-Token"), 10, 64)
	return reply{resp.StatusCode, token, string(body), resp.Header.Get("Retry-After")}
}

// concurrently sends n deposits of 1, 2 … n to account at once.
func concurrently(t *testing.T, url, account string, n int) []reply {
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() { replies[i] = deposit(t, url, account, i+1) })
	}
	wg.Wait()
	return replies
}

func TestRun_InMemory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out exampletest.Buffer
	const work = 200 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- run(ctx, &out, options{id: "a", addr: "127.0.0.1:0", wait: time.Second, work: work}) }()
	var url string
	for deadline := time.Now().Add(5 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := regexp.MustCompile(`a  serving on (http://\S+)`).FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("no URL in:\n%s", out.String())
	}

	// Three concurrent deposits to one account run one after the other,
	// each with a larger token and the balance so far.
	start := time.Now()
	alice := concurrently(t, url, "alice", 3)
	if took := time.Since(start); took < 3*work {
		t.Errorf("3 deposits to one account took %v, want ≥ %v (one at a time)", took, 3*work)
	}
	sort.Slice(alice, func(i, j int) bool { return alice[i].token < alice[j].token })
	for i, r := range alice {
		if r.status != http.StatusOK || r.token == 0 || (i > 0 && r.token == alice[i-1].token) {
			t.Errorf("deposit %d: %+v", i, r)
		}
	}
	if want := fmt.Sprintf("alice: balance 6 (token %d)\n", alice[2].token); alice[2].body != want {
		t.Errorf("last deposit: %q, want %q", alice[2].body, want)
	}

	// Eight at once cannot all run within the 1s wait: some get 409.
	statuses := map[int]int{}
	for _, r := range concurrently(t, url, "bob", 8) {
		statuses[r.status]++
		if r.status == http.StatusConflict && r.retryAfter == "" {
			t.Errorf("409 without Retry-After")
		}
	}
	if statuses[http.StatusOK] == 0 || statuses[http.StatusConflict] == 0 || statuses[http.StatusOK]+statuses[http.StatusConflict] != 8 {
		t.Errorf("statuses %v, want some 200 and some 409", statuses)
	}
	if r := deposit(t, url, "carol", 0); r.status != http.StatusOK {
		t.Errorf("deposit 0: %+v", r)
	}
	resp, err := http.Post(url+"/accounts/carol/deposit?amount=lots", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad amount: %d, want 400", resp.StatusCode)
	}

	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	s := out.String()
	for _, want := range []string{"in-memory store", "DLOCK_URL", fmt.Sprintf(" to alice: token %d, balance 6\n", alice[2].token), "a  deposit +"} {
		if !bytes.Contains([]byte(s), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	t.Logf("bob: %v", statuses)
}

func TestBalances_RefuseStaleTokens(t *testing.T) {
	db := &balances{balance: map[string]int64{}, fence: map[string]uint64{}}
	for _, d := range []struct {
		token   uint64
		amount  int64
		balance int64
		ok      bool
	}{{5, 10, 10, true}, {5, 1, 11, true}, {7, 1, 12, true}, {6, 100, 0, false}, {8, 1, 13, true}} {
		balance, err := db.deposit("alice", d.token, d.amount)
		if (err == nil) != d.ok || balance != d.balance {
			t.Errorf("deposit(token %d, %d) = %d, %v; want %d, ok %v", d.token, d.amount, balance, err, d.balance, d.ok)
		}
	}
}

// TestBinary runs the command until it serves, then presses Ctrl-C: it
// exits.
func TestBinary(t *testing.T) {
	t.Parallel()
	out := exampletest.RunBinary(t, regexp.MustCompile(`x  serving on http://127\.0\.0\.1:\d+ `), "-id", "x")
	if !strings.Contains(out, "store: mem://") {
		t.Errorf("output:\n%s", out)
	}
}
