package redislock_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

func TestNew_NilClientIsRefused(t *testing.T) {
	var typedNil *redis.Client
	for name, c := range map[string]redislock.Client{
		"nil interface":      nil,
		"nil *redis.Client":  typedNil,
		"nil *ClusterClient": (*redis.ClusterClient)(nil),
		"nil *redis.Ring":    (*redis.Ring)(nil),
	} {
		if _, err := redislock.New(c, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
			t.Errorf("%s: New = %v, want ErrNilDatabaseClient", name, err)
		}
		if _, err := redislock.NewBackend(c, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
			t.Errorf("%s: NewBackend = %v, want ErrNilDatabaseClient", name, err)
		}
	}
}

func TestNew_PrefixWithBraceIsRefused(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer c.Close()
	for _, p := range []string{"{app}:", "app{", "app}"} {
		if _, err := redislock.New(c, &redislock.Options{KeyPrefix: p}); err == nil {
			t.Errorf("KeyPrefix %q accepted", p)
		}
	}
	if _, err := redislock.New(c, &redislock.Options{Lock: lock.Options{Identity: strings.Repeat("x", lock.MaxIdentityLength+1)}}); err == nil {
		t.Error("an identity over the limit was accepted")
	}
}

func newLocker(t *testing.T, c redislock.Client, opts *redislock.Options) lock.Locker {
	t.Helper()
	l, err := redislock.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serverMicros is the server's clock in µs.
func serverMicros(t *testing.T, c redis.Cmdable) uint64 {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return uint64(now.UnixMicro())
}

func TestAcquire_TokensIncreaseAndFollowServerClock(t *testing.T) {
	c := singleClient(t)
	l := newLocker(t, c, nil)
	ctx := context.Background()
	key := randomKey(t)
	before := serverMicros(t, c)
	var last uint64
	for i := 0; i < 20; i++ {
		lk, err := l.Acquire(ctx, key, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if lk.Token() <= last {
			t.Fatalf("token %d after %d", lk.Token(), last)
		}
		if lk.Token() < before {
			t.Fatalf("token %d is below the server clock %d µs", lk.Token(), before)
		}
		last = lk.Token()
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAcquire_CounterRunsAheadOfAClockThatWentBack(t *testing.T) {
	c := singleClient(t)
	b, err := redislock.NewBackend(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	key := randomKey(t)
	// A counter far ahead of the clock, as after a clock step back.
	ahead := serverMicros(t, c) + uint64(time.Hour/time.Microsecond)
	if err := c.Set(ctx, "dlock:{"+key+"}:fence", ahead, 0).Err(); err != nil {
		t.Fatal(err)
	}
	g, ok, err := b.TryAcquire(ctx, key, "owner-1", time.Second)
	if err != nil || !ok {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	if g.Token != ahead+1 {
		t.Fatalf("token %d, want %d", g.Token, ahead+1)
	}
}

func TestAcquire_SubMillisecondTTLIsRoundedUp(t *testing.T) {
	// On the Backend: through a Locker, a 1ms grant whose answer takes
	// longer than 1ms (a loaded machine) is refused as late.
	b, err := redislock.NewBackend(singleClient(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for ttl, want := range map[time.Duration]time.Duration{
		time.Nanosecond:                    time.Millisecond,
		time.Millisecond + time.Nanosecond: 2 * time.Millisecond,
		1500 * time.Microsecond:            2 * time.Millisecond,
		3 * time.Second:                    3 * time.Second,
	} {
		key := randomKey(t)
		g, ok, err := b.TryAcquire(ctx, key, "0123456789abcdef0123456789abcdef", ttl)
		if err != nil || !ok {
			t.Fatalf("TryAcquire(%v) = %v, %v", ttl, ok, err)
		}
		if g.TTL != want {
			t.Errorf("TTL(%v) = %v, want %v", ttl, g.TTL, want)
		}
		_, _ = b.Release(ctx, key, "0123456789abcdef0123456789abcdef") // a 1ms lock may be gone already
	}
}

func TestAcquire_KeysAreBinarySafeAndDistinct(t *testing.T) {
	c := singleClient(t)
	l := newLocker(t, c, nil)
	ctx := context.Background()
	base := randomKey(t)
	// Pairs that a careless encoding would merge.
	suffixes := []string{
		"", "}", "{", "{}", "}{", `\`, `\x7d`, `\x5c`, "\x00", "\x00\x00", "\xff\xfe",
		"}:fence", ":fence", "a}b", "a{b}c", strings.Repeat("}", 300),
	}
	held := make([]lock.Lock, 0, len(suffixes))
	for _, s := range suffixes {
		lk, err := l.Acquire(ctx, base+s, time.Minute)
		if err != nil {
			t.Fatalf("key %q: %v", base+s, err)
		}
		held = append(held, lk)
	}
	long := strings.Repeat("}\x00{", lock.MaxKeyLength/3)
	lk, err := l.Acquire(ctx, long, time.Minute)
	if err != nil {
		t.Fatalf("long key: %v", err)
	}
	held = append(held, lk)
	for _, lk := range held {
		if err := lk.Release(ctx); err != nil {
			t.Errorf("release %q: %v", lk.Key(), err)
		}
	}
}

func TestCluster_LockAndFenceShareASlotWhateverTheKey(t *testing.T) {
	c := clusterClient(t)
	l := newLocker(t, c, &redislock.Options{KeyPrefix: "p:"})
	ctx := context.Background()
	keys := []string{"plain", "}", "{", "{x}", "a}b{c}", `\}`, "\x00}", strings.Repeat("{}", 200)}
	for i := 0; i < 64; i++ {
		keys = append(keys, randomKey(t)+strconv.Itoa(i))
	}
	for _, k := range keys {
		// One script touching both keys: a cross-slot pair fails here.
		lk, err := l.Acquire(ctx, k, time.Minute)
		if err != nil {
			t.Fatalf("acquire %q: %v", k, err)
		}
		if err := lk.Refresh(ctx, time.Minute); err != nil {
			t.Fatalf("refresh %q: %v", k, err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatalf("release %q: %v", k, err)
		}
	}
}

func TestFence_OutlivesTheLockByTheRetention(t *testing.T) {
	c := singleClient(t)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		retention time.Duration
		min, max  time.Duration // -1: no TTL
	}{
		"default": {0, time.Hour, time.Hour + 10*time.Second},
		"custom":  {time.Minute, time.Minute, time.Minute + 10*time.Second},
		"forever": {-1, -1, -1},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLocker(t, c, &redislock.Options{FenceRetention: tc.retention})
			key := randomKey(t)
			lk, err := l.Acquire(ctx, key, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer lk.Release(ctx)
			fence := "dlock:{" + key + "}:fence"
			d, err := c.PTTL(ctx, fence).Result()
			if err != nil {
				t.Fatal(err)
			}
			if tc.min < 0 {
				if d != -1 {
					t.Fatalf("fence PTTL %v, want none", d)
				}
				return
			}
			if d < tc.min || d > tc.max {
				t.Fatalf("fence PTTL %v, want in [%v, %v]", d, tc.min, tc.max)
			}
			if err := lk.Refresh(ctx, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			d2, _ := c.PTTL(ctx, fence).Result()
			if d2 < tc.min+10*time.Second-time.Second {
				t.Fatalf("after refresh the fence PTTL is %v, want it past the new lock TTL", d2)
			}
		})
	}
}

func TestInspect_ReportsOwnerTokenAndTTL(t *testing.T) {
	c := singleClient(t)
	ctx := context.Background()
	l := newLocker(t, c, &redislock.Options{Lock: lock.Options{Identity: "worker-7"}})
	b, err := redislock.NewBackend(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var in driver.Inspector = b
	key := randomKey(t) + "\x00}"
	if _, ok, err := in.Inspect(ctx, key); ok || err != nil {
		t.Fatalf("free key: Inspect = %v, %v", ok, err)
	}
	lk, err := l.Acquire(ctx, key, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h, ok, err := in.Inspect(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Inspect = %v, %v", ok, err)
	}
	if h.Token != lk.Token() {
		t.Errorf("token %d, want %d", h.Token, lk.Token())
	}
	if got := lock.OwnerIdentity(h.Owner); got != "worker-7" {
		t.Errorf("identity %q (owner %q)", got, h.Owner)
	}
	if h.TTL <= 25*time.Second || h.TTL > 30*time.Second {
		t.Errorf("TTL %v", h.TTL)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := in.Inspect(ctx, key); ok || err != nil {
		t.Fatalf("released key: Inspect = %v, %v", ok, err)
	}
}

func TestAcquire_RetriedAttemptOfTheSameOwnerSucceeds(t *testing.T) {
	// go-redis retries a command whose reply it lost; the second attempt
	// must report the first one's success, not contention.
	c := singleClient(t)
	b, err := redislock.NewBackend(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	key := randomKey(t)
	g1, ok, err := b.TryAcquire(ctx, key, "owner-a", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first = %v, %v", ok, err)
	}
	g2, ok, err := b.TryAcquire(ctx, key, "owner-a", time.Minute)
	if err != nil || !ok || g2.Token != g1.Token {
		t.Fatalf("retry = %+v, %v, %v; want token %d", g2, ok, err, g1.Token)
	}
	if _, ok, err := b.TryAcquire(ctx, key, "owner-b", time.Minute); ok || err != nil {
		t.Fatalf("other owner = %v, %v", ok, err)
	}
	if ok, err := b.Release(ctx, key, "owner-a"); !ok || err != nil {
		t.Fatalf("release = %v, %v", ok, err)
	}
}

func TestScripts_ReloadedAfterScriptFlush(t *testing.T) {
	r := startPrivateRedis(t)
	c := r.client(nil)
	l := newLocker(t, c, nil)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		lk, err := l.Acquire(ctx, "k", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := lk.Refresh(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAcquire_CancellableContextTakesTheSameRoad(t *testing.T) {
	c := singleClient(t)
	l := newLocker(t, c, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := randomKey(t)
	lk, err := l.Acquire(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, key, time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("second Acquire = %v, want ErrLockNotAcquired", err)
	}
	if err := lk.Refresh(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := l.Acquire(done, key, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire under a cancelled ctx = %v", err)
	}
}

func TestLocker_InspectsThroughTheStore(t *testing.T) {
	c := singleClient(t)
	ctx := context.Background()
	l := newLocker(t, c, &redislock.Options{Lock: lock.Options{Identity: "worker-9"}})
	in, ok := l.(lock.Inspector)
	if !ok {
		t.Fatal("the Locker does not implement lock.Inspector")
	}
	key := randomKey(t)
	lk, err := l.Acquire(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release(ctx)
	h, held, err := in.Inspect(ctx, key)
	if err != nil || !held {
		t.Fatalf("Inspect = %v, %v", held, err)
	}
	if h.Identity != "worker-9" || h.Token != lk.Token() {
		t.Fatalf("Inspect = %+v, want identity worker-9 and token %d", h, lk.Token())
	}
}
