package zklock_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

func newLocker(t testing.TB, servers []string, opts *zklock.Options) lock.Locker {
	t.Helper()
	if opts == nil {
		opts = testOptions()
	}
	l, err := zklock.New(servers, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// rawConn is a plain client of the test server, for looking behind dlock's
// back.
func rawConn(t testing.TB, servers []string) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect(servers, 10*time.Second, zk.WithLogger(log.New(discard{}, "", 0)), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// safeKey is a key escaping leaves as it is, so that tests can name its
// node: root/l/key.
func safeKey(t testing.TB) string {
	k := randomKey(t)
	out := make([]byte, 0, len(k))
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			out = append(out, c)
		} else {
			out = append(out, '_')
		}
	}
	return string(out)
}

func TestNew_RejectsBadArguments(t *testing.T) {
	if _, err := zklock.New(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("New(nil): %v, want lock.ErrNilDatabaseClient", err)
	}
	bad := []*zklock.Options{
		{Root: "dlock"}, {Root: "/"}, {Root: "/a/"}, {Root: "/a//b"}, {Root: "/a/./b"}, {Root: "/a/.."},
		{Root: "/zookeeper"}, {Root: "/zookeeper/x"}, {Root: "/a\x00b"}, {Root: "/\xff"},
		{SessionTimeout: time.Microsecond},
		{SessionTimeout: 10 * time.Second, MaxSessionTimeout: 5 * time.Second},
		{MaxSessionTimeout: 1000 * time.Hour},
	}
	for _, o := range bad {
		if l, err := zklock.New([]string{"127.0.0.1:1"}, o); err == nil {
			l.Close()
			t.Errorf("New with %+v: no error", *o)
		}
	}
	if _, err := zklock.New([]string{""}, nil); err == nil {
		t.Error("New with an empty address: no error")
	}
}

func TestToken_IsTheCreationZxidAndIncreases(t *testing.T) {
	srv := servers(t)
	l := newLocker(t, srv, nil)
	raw := rawConn(t, srv)
	key := safeKey(t)
	var last uint64
	for i := range 20 {
		lk, err := l.Acquire(ctxT(t), key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		data, st, err := raw.Get(testOptions().Root + "/l/" + key)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(st.Czxid) != lk.Token() || st.EphemeralOwner == 0 || len(data) < 32 {
			t.Fatalf("round %d: token %d, node czxid %d, ephemeral owner %x, data %q", i, lk.Token(), st.Czxid, st.EphemeralOwner, data)
		}
		if lk.Token() <= last {
			t.Fatalf("round %d: token %d not above %d", i, lk.Token(), last)
		}
		last = lk.Token()
		if err := lk.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClose_FreesLocksAtOnce(t *testing.T) {
	srv := servers(t)
	a, err := zklock.New(srv, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	b := newLocker(t, srv, nil)
	key := randomKey(t)
	lk, err := a.Acquire(ctxT(t), key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	held, stop := lock.Hold(ctxT(t), lk, nil)
	defer stop()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
		if !errors.Is(context.Cause(held), lock.ErrLockNotHeld) {
			t.Errorf("hold ended with %v, want lock.ErrLockNotHeld", context.Cause(held))
		}
	case <-time.After(5 * time.Second):
		t.Error("the hold of a lock whose Locker closed still runs after 5s")
	}
	// Closing the session deleted its nodes before Close returned.
	lk, err = b.Acquire(ctxT(t), key, time.Minute)
	if err != nil {
		t.Fatalf("Acquire after the holder closed: %v", err)
	}
	_ = lk.Release(ctxT(t))
}

func TestLoss_DeletedNodeCancelsHold(t *testing.T) {
	srv := servers(t)
	l := newLocker(t, srv, nil)
	raw := rawConn(t, srv)
	key := safeKey(t)
	lk, err := l.Acquire(ctxT(t), key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	held, stop := lock.Hold(ctxT(t), lk, nil)
	defer stop()
	start := time.Now()
	if err := raw.Delete(testOptions().Root+"/l/"+key, -1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
		t.Logf("hold cancelled %v after the node was deleted (cause: %v)", time.Since(start), context.Cause(held))
	case <-time.After(10 * time.Second):
		t.Fatal("hold not cancelled within 10s of the node's deletion")
	}
	if !errors.Is(context.Cause(held), lock.ErrLockNotHeld) {
		t.Errorf("cause %v, want lock.ErrLockNotHeld", context.Cause(held))
	}
	if err := lk.Refresh(ctxT(t), time.Minute); !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Refresh: %v, want lock.ErrLockNotHeld", err)
	}
}

// TestSessionExpiry_LockIsFreedAndHolderTold cuts a holder off the server
// (through a proxy) until the server expires its session: the server frees
// the lock one session timeout after it last heard from the holder, the
// holder's Hold ends no later, and when the holder reconnects it is told
// its session expired.
func TestSessionExpiry_LockIsFreedAndHolderTold(t *testing.T) {
	srv := servers(t)
	px := newProxy(t, srv[0])
	// Long enough that the hold's margin (a fifth: 400 ms) covers a scheduling
	// stall on a loaded machine.
	const session = 2 * time.Second
	holder := newLocker(t, []string{px.addr}, &zklock.Options{
		Root: testOptions().Root, SessionTimeout: session, MaxSessionTimeout: time.Minute,
	})
	other := newLocker(t, srv, nil)
	key := randomKey(t)
	lk, err := holder.Acquire(ctxT(t), key, session)
	if err != nil {
		t.Fatal(err)
	}
	if lk.TTL() != session {
		t.Errorf("TTL %v, want the session timeout %v", lk.TTL(), session)
	}
	lost := lk.(lock.LossNotifier).NotifyLoss(ctxT(t))
	if lost == nil {
		t.Fatal("NotifyLoss returned nil for a lock taken here")
	}
	held, stop := lock.Hold(ctxT(t), lk, nil)
	defer stop()
	holdEnd := make(chan time.Time, 1)
	context.AfterFunc(held, func() { holdEnd <- time.Now() })

	cut := time.Now()
	px.cut()
	var freed time.Duration
	eventually(t, 10*time.Second, "the server frees the lock", func() bool {
		nl, err := other.Acquire(ctxT(t), key, time.Minute)
		if err != nil {
			if !errors.Is(err, lock.ErrLockNotAcquired) {
				t.Fatalf("Acquire by the other holder: %v", err)
			}
			return false
		}
		freed = time.Since(cut)
		_ = nl.Release(ctxT(t))
		return true
	})
	var holdEnded time.Duration
	select {
	case at := <-holdEnd:
		holdEnded = at.Sub(cut)
	default:
		t.Fatalf("the lock was free %v after the cut but the holder's Hold still runs", freed)
	}
	if holdEnded > freed {
		t.Errorf("Hold ended %v after the cut, after the server freed the lock (%v)", holdEnded, freed)
	}

	healed := time.Now()
	px.heal()
	select {
	case <-lost:
		t.Logf("session %v: server freed the lock %v after the cut; Hold ended %v after the cut (cause %v); "+
			"the expiry was pushed %v after the holder could reconnect",
			session, freed, holdEnded, context.Cause(held), time.Since(healed))
	case <-time.After(10 * time.Second):
		t.Fatal("the loss was not pushed within 10s of the reconnection")
	}
	if err := lk.Refresh(ctxT(t), session); !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Refresh after expiry: %v, want lock.ErrLockNotHeld", err)
	}
	if err := lk.Release(ctxT(t)); !errors.Is(err, lock.ErrLockNotHeld) {
		t.Errorf("Release after expiry: %v, want lock.ErrLockNotHeld", err)
	}
	// The holder works again, on a new session.
	lk2, err := holder.Acquire(ctxT(t), key, session)
	if err != nil {
		t.Fatalf("Acquire on the new session: %v", err)
	}
	if lk2.Token() <= lk.Token() {
		t.Errorf("token %d after expiry not above %d", lk2.Token(), lk.Token())
	}
	_ = lk2.Release(ctxT(t))
}

// TestLongTTL_DroppedConnectionIsALoss checks that a lock whose TTL is
// longer than the longest session is reported lost as soon as its
// connection drops: the server may free it before its TTL.
func TestLongTTL_DroppedConnectionIsALoss(t *testing.T) {
	srv := servers(t)
	px := newProxy(t, srv[0])
	holder := newLocker(t, []string{px.addr}, &zklock.Options{
		Root: testOptions().Root, SessionTimeout: time.Second, MaxSessionTimeout: time.Second,
	})
	lk, err := holder.Acquire(ctxT(t), randomKey(t), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lk.TTL() != 10*time.Second {
		t.Errorf("TTL %v, want the 10s asked for", lk.TTL())
	}
	held, stop := lock.Hold(ctxT(t), lk, nil)
	defer stop()
	cut := time.Now()
	px.cut()
	select {
	case <-held.Done():
		t.Logf("hold of a 10s lock on a 1s session cancelled %v after its connection dropped", time.Since(cut))
	case <-time.After(5 * time.Second):
		t.Fatal("hold not cancelled within 5s of the connection's drop")
	}
	px.heal()
}

// TestRestart_TokensKeepIncreasing restarts a private server (SIGKILL, then
// the same data directory): the creation zxids of later locks are still
// larger, because the server keeps its transaction log and starts a new
// epoch.
func TestRestart_TokensKeepIncreasing(t *testing.T) {
	zs := startZK(t)
	l := newLocker(t, []string{zs.addr}, &zklock.Options{SessionTimeout: time.Second, MaxSessionTimeout: time.Minute})
	key := randomKey(t)
	var before uint64
	for range 5 {
		lk, err := l.Acquire(ctxT(t), key, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		before = lk.Token()
		if err := lk.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	zs.kill()
	zs.start()
	var after uint64
	eventually(t, 30*time.Second, "an acquisition after the restart", func() bool {
		lk, err := l.Acquire(ctxT(t), key, time.Second)
		if err != nil {
			return false // reconnecting
		}
		after = lk.Token()
		_ = lk.Release(ctxT(t))
		return true
	})
	t.Logf("token before the restart %d (epoch %d, counter %d), after %d (epoch %d, counter %d)",
		before, before>>32, before&0xffffffff, after, after>>32, after&0xffffffff)
	if after <= before {
		t.Fatalf("token after the restart %d is not above %d", after, before)
	}
}

func TestList_ReportsHeldKeys(t *testing.T) {
	srv := servers(t)
	b, err := zklock.NewBackend(srv, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	prefix := randomKey(t) + "/"
	want := map[string]uint64{}
	for i, k := range []string{"a", "b/c", "\x00é"} {
		owner := "0000000000000000000000000000000" + string(rune('1'+i))
		g, ok, err := b.TryAcquire(ctxT(t), prefix+k, owner, time.Minute)
		if !ok || err != nil {
			t.Fatalf("TryAcquire: %v %v", ok, err)
		}
		want[prefix+k] = g.Token
	}
	got := map[string]uint64{}
	err = b.(driver.Lister).List(ctxT(t), prefix, func(key string, h driver.Holder) bool {
		got[key] = h.Token
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	for k, tok := range want {
		if got[k] != tok {
			t.Errorf("List[%q] = %d, want %d", k, got[k], tok)
		}
	}
}

// received asks the server (`srvr`) how many packets it has received.
func received(t testing.TB, addr string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Received: "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Received line in %q", out)
	return 0
}

// TestRoundTrips counts the requests the server receives for each
// operation, on a backend whose session is already open: one each. (The
// count is the smallest of three tries, to leave out a heartbeat.)
func TestRoundTrips(t *testing.T) {
	srv := servers(t)
	opts := testOptions()
	opts.SessionTimeout = opts.MaxSessionTimeout // heartbeats every 20 s
	a, b := newLocker(t, srv, opts), newLocker(t, srv, opts)
	key := randomKey(t)
	if err := a.Ping(ctxT(t)); err != nil { // opens the session
		t.Fatal(err)
	}
	if err := b.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	count := func(setup, op func()) int {
		best := 1 << 30
		for range 3 {
			setup()
			before := received(t, srv[0])
			op()
			best = min(best, received(t, srv[0])-before-1) // -1: the srvr that measured
		}
		return best
	}
	var lk lock.Lock
	take := func() {
		var err error
		if lk, err = a.Acquire(ctxT(t), key, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	drop := func() {
		if err := lk.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	acquire := count(func() {
		if lk != nil {
			drop()
		}
	}, take)
	refused := count(func() {}, func() {
		if _, err := b.Acquire(ctxT(t), key, time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("Acquire of a held key: %v", err)
		}
	})
	refresh := count(func() {}, func() {
		if err := lk.Refresh(ctxT(t), time.Minute); err != nil {
			t.Fatal(err)
		}
	})
	release := count(func() {
		if lk == nil {
			take()
		}
	}, func() {
		drop()
		lk = nil
	})
	t.Logf("requests: acquire %d, refused acquire %d, refresh %d, release %d", acquire, refused, refresh, release)
	if acquire != 1 || refused != 1 || refresh != 1 || release != 1 {
		t.Errorf("want one request each")
	}
}
