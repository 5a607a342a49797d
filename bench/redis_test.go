package bench

// Redis benchmarks: dlock's redislock beside the raw protocol floor and two
// peer libraries, against the loopback redis-server of scripts/services.sh.
//
// Two kinds of benchmark, both in one `go test -bench Redis` run:
//
//   - BenchmarkRedis/<case>/<contender>: ordinary sub-benchmarks, for
//     ns/op and allocs/op (use -count and benchstat). Contenders run one
//     after the other, so a drift in loopback latency (±50 % on this kind
//     of machine) lands on one contender more than another.
//   - BenchmarkRedisInterleaved/<case>: every iteration runs one cycle of
//     each contender, in a random order, and reports each
//     contender's median time per cycle (<name>-p50-ns) and dlock's ratio
//     to each other contender (dlock/<name>). Drift hits all contenders
//     alike, so these are the ratios to quote.
//
// A cycle is one acquire and one release of a free key, each one round trip
// for every contender:
//
//   - dlock:   redislock (EVALSHA acquire with fencing token, EVALSHA release)
//   - raw:     go-redis SET NX PX, then an EVALSHA compare-and-delete
//   - bsm:     github.com/bsm/redislock Obtain (EVALSHA) and Release (EVALSHA)
//   - redsync: github.com/go-redsync/redsync/v4, one pool, TryLockContext
//     (SET NX PX) and UnlockContext (EVALSHA)
//   - raw-fenced: the floor of a lock with fencing tokens: one minimal
//     script (SET NX PX, TIME, SET … GET of the counter), then raw's
//     release; dlock/raw-fenced is the cost of the library itself
//   - dlock-cancellable, dlock-deadline: dlock under contexts that can end
//     (see redisDlockCtx)
//
// Cases: OneKey (the same key every cycle), DistinctKeys (a new key every
// cycle), Parallel (b.RunParallel, a key per goroutine; run with -cpu
// 1,2,8) and Contended (8 goroutines fighting for one key; critical
// sections per second).

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bsm "github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

const redisTTL = 10 * time.Second

// redisContender makes one acquire+release cycle on key. acquired is false
// when another holder had the key (only in the contended case).
type redisContender interface {
	name() string
	cycle(ctx context.Context, key string) (acquired bool, err error)
}

type redisDlock struct{ l lock.Locker }

func (redisDlock) name() string { return "dlock" }
func (d redisDlock) cycle(ctx context.Context, key string) (bool, error) {
	lk, err := d.l.Acquire(ctx, key, redisTTL)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, lk.Release(ctx)
}

// redisDlockCtx is dlock called with a context that can end, as most
// callers' are. go-redis ignores contexts on socket reads unless the client
// was built with ContextTimeoutEnabled, so on a default client redislock
// waits for the reply in a goroutine of its own to be able to return when
// ctx ends ("dlock-cancellable": a cancellable context, default client);
// on a ContextTimeoutEnabled client under a context with a deadline it
// calls inline ("dlock-deadline"). Reported beside the others, not in the
// ratios.
type redisDlockCtx struct {
	label string
	l     lock.Locker
	ctx   context.Context
}

func (d redisDlockCtx) name() string { return d.label }
func (d redisDlockCtx) cycle(_ context.Context, key string) (bool, error) {
	return redisDlock{d.l}.cycle(d.ctx, key)
}

// redisRaw is the floor: what any safe Redis lock must send. The value is
// unique per acquisition (a random prefix and a counter), as an owner must
// be.
type redisRaw struct {
	c       *redis.Client
	prefix  string
	n       *atomic.Uint64
	release *redis.Script
}

func (redisRaw) name() string { return "raw" }
func (r redisRaw) cycle(ctx context.Context, key string) (bool, error) {
	val := r.prefix + strconv.FormatUint(r.n.Add(1), 10)
	ok, err := r.c.SetNX(ctx, key, val, redisTTL).Result()
	if err != nil || !ok {
		return false, err
	}
	n, err := r.release.Run(ctx, r.c, []string{key}, val).Int()
	if err == nil && n != 1 {
		err = errors.New("raw: not released")
	}
	return true, err
}

// redisRawFenced is the floor of a fenced lock: one script that takes the
// lock and returns the next token (max(last + 1, server µs), the counter in
// the same hash slot), and the compare-and-delete of raw. It has no key
// escaping, no owner tokens and no Locker; dlock's ratio to it is the cost
// of the library itself.
type redisRawFenced struct {
	redisRaw
	acquire *redis.Script
}

func (redisRawFenced) name() string { return "raw-fenced" }
func (r redisRawFenced) cycle(ctx context.Context, key string) (bool, error) {
	val := r.prefix + strconv.FormatUint(r.n.Add(1), 10)
	k := "{" + key + "}"
	tok, err := r.acquire.Run(ctx, r.c, []string{k, k + ":f"}, val, 10000, 3610000).Int64()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if tok <= 0 {
		return false, errors.New("raw-fenced: no token")
	}
	n, err := r.release.Run(ctx, r.c, []string{k}, val).Int()
	if err == nil && n != 1 {
		err = errors.New("raw-fenced: not released")
	}
	return true, err
}

const redisRawFencedAcquire = `
if not redis.call("set", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return false end
local t = redis.call("time")
local now = t[1] .. string.rep("0", 6 - #t[2]) .. t[2]
local last = tonumber(redis.call("set", KEYS[2], now, "PX", ARGV[3], "GET") or "0")
local token = tonumber(now)
if last >= token then
	token = last + 1
	redis.call("set", KEYS[2], string.format("%.0f", token), "PX", ARGV[3])
end
return token`

type redisBsm struct{ c *bsm.Client }

func (redisBsm) name() string { return "bsm" }
func (r redisBsm) cycle(ctx context.Context, key string) (bool, error) {
	lk, err := r.c.Obtain(ctx, key, redisTTL, nil)
	if errors.Is(err, bsm.ErrNotObtained) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, lk.Release(ctx)
}

type redisRedsync struct{ rs *redsync.Redsync }

func (redisRedsync) name() string { return "redsync" }
func (r redisRedsync) cycle(ctx context.Context, key string) (bool, error) {
	m := r.rs.NewMutex(key, redsync.WithExpiry(redisTTL), redsync.WithTries(1))
	err := m.TryLockContext(ctx)
	var taken *redsync.ErrTaken
	if errors.Is(err, redsync.ErrFailed) || errors.As(err, &taken) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ok, err := m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: not released")
	}
	return true, err
}

// redisSetup connects to the shared server and returns the contenders:
// dlock first, then raw, bsm, redsync, dlock under contexts that can end,
// and raw-fenced. Each works in its own key namespace.
func redisSetup(b *testing.B) []redisContender {
	b.Helper()
	opt, err := redis.ParseURL(testenv.URL(b, testenv.Redis))
	if err != nil {
		b.Fatal(err)
	}
	opt.PoolSize = 64 // enough for -cpu 8 and the contended case
	c := redis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
	l, err := redislock.New(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	var rnd [8]byte
	crand.Read(rnd[:])
	cctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	aopt := *opt
	aopt.ContextTimeoutEnabled = true
	ca := redis.NewClient(&aopt)
	b.Cleanup(func() { ca.Close() })
	la, err := redislock.New(ca, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { la.Close() })
	dctx, dcancel := context.WithTimeout(context.Background(), time.Hour)
	b.Cleanup(dcancel)
	raw := redisRaw{
		c:      c,
		prefix: hex.EncodeToString(rnd[:]) + ":",
		n:      new(atomic.Uint64),
		release: redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then ` +
			`return redis.call("del", KEYS[1]) else return 0 end`),
	}
	return []redisContender{
		redisDlock{l},
		raw,
		redisBsm{bsm.New(c)},
		redisRedsync{redsync.New(redsyncgoredis.NewPool(c))},
		redisDlockCtx{"dlock-cancellable", l, cctx},
		redisDlockCtx{"dlock-deadline", la, dctx},
		redisRawFenced{raw, redis.NewScript(redisRawFencedAcquire)},
	}
}

// redisKeys returns n keys for contender x in this run.
func redisKeys(run, contender string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = "bench:" + run + ":" + contender + ":" + strconv.Itoa(i)
	}
	return ks
}

func redisRunID() string {
	var b [4]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// redisCheck turns a refusal of an uncontended key into an error.
func redisCheck(ok bool, err error) error {
	if err == nil && !ok {
		err = errors.New("an uncontended key was refused")
	}
	return err
}

func BenchmarkRedis(b *testing.B) {
	cs := redisSetup(b)
	ctx := context.Background()
	run := redisRunID()
	b.Run("OneKey", func(b *testing.B) {
		for _, c := range cs {
			b.Run(c.name(), func(b *testing.B) {
				key := "bench:" + run + ":one:" + c.name()
				b.ReportAllocs()
				for b.Loop() {
					if err := redisCheck(c.cycle(ctx, key)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	b.Run("DistinctKeys", func(b *testing.B) {
		for _, c := range cs {
			b.Run(c.name(), func(b *testing.B) {
				keys := redisKeys(run+":distinct:"+strconv.Itoa(b.N), c.name(), b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := redisCheck(c.cycle(ctx, keys[i])); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		for _, c := range cs {
			b.Run(c.name(), func(b *testing.B) {
				var g atomic.Int64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					key := fmt.Sprintf("bench:%s:par:%s:%d:%d", run, c.name(), b.N, g.Add(1))
					for pb.Next() {
						if err := redisCheck(c.cycle(ctx, key)); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	})
}

// BenchmarkRedisInterleaved runs every contender in each iteration, in a
// random order (so that no contender always follows the same one), and reports each contender's median time per cycle
// (<name>-p50-ns) and dlock's ratio to the others' medians (dlock/<name>).
// Medians, because on a shared machine a few cycles stall for milliseconds
// and would dominate a mean.
func BenchmarkRedisInterleaved(b *testing.B) {
	cs := redisSetup(b)
	ctx := context.Background()
	run := redisRunID()
	report := func(b *testing.B, times [][]time.Duration) {
		p50 := make([]float64, len(cs))
		for i, c := range cs {
			ts := times[i]
			slices.Sort(ts)
			if len(ts) > 0 {
				p50[i] = float64(ts[len(ts)/2].Nanoseconds())
			}
			b.ReportMetric(p50[i], c.name()+"-p50-ns")
		}
		for i, c := range cs[1:] {
			b.ReportMetric(p50[0]/p50[i+1], "dlock/"+c.name())
		}
		b.ReportMetric(0, "ns/op") // the per-contender figures are the ones that mean something
	}
	rng := rand.New(rand.NewPCG(1, 2)) // the same orders in every run
	timed := func(c redisContender, key string) time.Duration {
		start := time.Now()
		if err := redisCheck(c.cycle(ctx, key)); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.Run("OneKey", func(b *testing.B) {
		keys := make([]string, len(cs))
		times := make([][]time.Duration, len(cs))
		for i, c := range cs {
			keys[i] = "bench:" + run + ":ione:" + c.name()
			times[i] = make([]time.Duration, 0, b.N)
		}
		for i := 0; i < b.N; i++ {
			for _, k := range rng.Perm(len(cs)) {
				times[k] = append(times[k], timed(cs[k], keys[k]))
			}
		}
		report(b, times)
	})
	b.Run("DistinctKeys", func(b *testing.B) {
		keys := make([][]string, len(cs))
		times := make([][]time.Duration, len(cs))
		for i, c := range cs {
			keys[i] = redisKeys(run+":idistinct:"+strconv.Itoa(b.N), c.name(), b.N)
			times[i] = make([]time.Duration, 0, b.N)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, k := range rng.Perm(len(cs)) {
				times[k] = append(times[k], timed(cs[k], keys[k][i]))
			}
		}
		report(b, times)
	})
	b.Run("Parallel", func(b *testing.B) {
		var (
			mu    sync.Mutex
			times = make([][]time.Duration, len(cs))
			g     atomic.Int64
		)
		b.RunParallel(func(pb *testing.PB) {
			id := g.Add(1)
			keys := make([]string, len(cs))
			mine := make([][]time.Duration, len(cs))
			for i, c := range cs {
				keys[i] = fmt.Sprintf("bench:%s:ipar:%s:%d:%d", run, c.name(), b.N, id)
			}
			r := rand.New(rand.NewPCG(uint64(id), 3))
			for pb.Next() {
				k := r.IntN(len(cs))
				mine[k] = append(mine[k], timed(cs[k], keys[k]))
			}
			mu.Lock()
			for k := range cs {
				times[k] = append(times[k], mine[k]...)
			}
			mu.Unlock()
		})
		report(b, times)
	})
	b.Run("Contended", func(b *testing.B) {
		// 8 goroutines try the same key without waiting between attempts;
		// each contender gets the server for a slice of time in turn.
		const goroutines = 8
		const slice = 50 * time.Millisecond
		sections := make([]int64, len(cs))
		spent := make([]time.Duration, len(cs))
		for i := 0; i < b.N; i++ {
			for j := range cs {
				k := (i + j) % len(cs)
				key := "bench:" + run + ":contended:" + cs[k].name()
				var n atomic.Int64
				var wg sync.WaitGroup
				errc := make(chan error, goroutines)
				start := time.Now()
				until := start.Add(slice)
				for range goroutines {
					wg.Go(func() {
						for time.Now().Before(until) {
							ok, err := cs[k].cycle(ctx, key)
							if err != nil {
								errc <- err
								return
							}
							if ok {
								n.Add(1)
							}
						}
					})
				}
				wg.Wait()
				spent[k] += time.Since(start)
				sections[k] += n.Load()
				close(errc)
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		}
		cps := make([]float64, len(cs))
		for i, c := range cs {
			cps[i] = float64(sections[i]) / spent[i].Seconds()
			b.ReportMetric(cps[i], c.name()+"-cs/s")
		}
		for i, c := range cs[1:] {
			b.ReportMetric(cps[0]/cps[i+1], "dlock/"+c.name()+"-throughput")
		}
		b.ReportMetric(0, "ns/op")
	})
}
