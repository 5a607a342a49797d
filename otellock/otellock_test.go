package otellock_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
	"github.com/dlockgo/dlock/otellock"
	"github.com/dlockgo/dlock/retry"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// telemetry is an SDK tracer provider recording every span and an SDK
// meter provider with a manual reader.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		tel.tp.Shutdown(context.Background())
		tel.mp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) options(store string, key otellock.KeyAttribute) *otellock.Options {
	return &otellock.Options{TracerProvider: tel.tp, MeterProvider: tel.mp, Store: store, Key: key}
}

// spanLines renders the ended spans, one line each: name, kind, status
// and sorted attributes.
func (tel *telemetry) spanLines() []string {
	var out []string
	for _, s := range tel.spans.Ended() {
		attrs := make([]string, 0, len(s.Attributes()))
		for _, kv := range s.Attributes() {
			attrs = append(attrs, string(kv.Key)+"="+kv.Value.String())
		}
		slices.Sort(attrs)
		st := s.Status().Code.String()
		if d := s.Status().Description; d != "" {
			st += " " + strconvQuote(d)
		}
		out = append(out, fmt.Sprintf("%s %s %s [%s]", s.Name(), s.SpanKind(), st, strings.Join(attrs, " ")))
	}
	return out
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// metrics collects and returns the metrics by name.
func (tel *telemetry) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otellock.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, otellock.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:\n\t%s\nwant:\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

var (
	acquireBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	holdBounds    = []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}
)

// hist is a histogram data point holding one value.
func hist(bounds []float64, v float64, kv ...attribute.KeyValue) metricdata.HistogramDataPoint[float64] {
	counts := make([]uint64, len(bounds)+1)
	i, _ := slices.BinarySearch(bounds, v) // buckets are (b[i-1], b[i]]
	counts[i] = 1
	return metricdata.HistogramDataPoint[float64]{
		Attributes: attribute.NewSet(kv...), Bounds: bounds, BucketCounts: counts, Count: 1, Sum: v,
		Min: metricdata.NewExtrema(v), Max: metricdata.NewExtrema(v),
	}
}

func point(v int64, kv ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Attributes: attribute.NewSet(kv...), Value: v}
}

var (
	mem        = attribute.String("dlock.store", "mem")
	acquired   = attribute.String("dlock.outcome", "acquired")
	contended  = attribute.String("dlock.outcome", "contended")
	failed     = attribute.String("dlock.outcome", "error")
	released   = attribute.String("dlock.outcome", "released")
	lost       = attribute.String("dlock.outcome", "lost")
	invalidArg = attribute.String("error.type", "invalid_argument")
	storeErr   = attribute.String("error.type", "store")
)

func assertMetric(t *testing.T, got map[string]metricdata.Metrics, want metricdata.Metrics) {
	t.Helper()
	g, ok := got[want.Name]
	if !ok {
		t.Errorf("no metric %s", want.Name)
		return
	}
	metricdatatest.AssertEqual(t, want, g, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
}

func secs(d time.Duration) float64 { return d.Seconds() }

func TestWrap_RecordsExactSpansAndMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		s, _ := memlock.NewStore(nil)
		faulty := locktest.NewFaulty(s.Backend())
		faulty.SetLatency(10 * time.Millisecond)
		inner, _ := lock.New(faulty, nil)
		w := otellock.Wrap(inner, tel.options("mem", otellock.KeyRaw))
		defer w.Close()
		otherInner, _ := s.NewLocker(nil)
		other := otellock.Wrap(otherInner, tel.options("mem", otellock.KeyRaw))
		defer other.Close()
		ctx := t.Context()

		lk, err := w.Acquire(ctx, "k", time.Minute) // 0 → 10ms
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Acquire(ctx, "k", time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
			t.Fatalf("second holder: %v", err)
		}
		if _, err := w.Acquire(ctx, "", time.Minute); !errors.Is(err, lock.ErrEmptyKey) {
			t.Fatalf("empty key: %v", err)
		}
		if err := lk.Refresh(ctx, time.Minute); err != nil { // 10 → 20ms
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := lk.Release(ctx); err != nil { // 1.02 → 1.03s
			t.Fatal(err)
		}
		if err := lk.Release(ctx); !errors.Is(err, lock.ErrLockNotHeld) {
			t.Fatalf("second release: %v", err)
		}

		equalLines(t, "spans", tel.spanLines(), []string{
			`dlock.acquire client Unset [dlock.key=k dlock.outcome=acquired dlock.store=mem dlock.token=1]`,
			`dlock.acquire client Unset [dlock.key=k dlock.outcome=contended dlock.store=mem]`,
			`dlock.acquire client Error "acquire \"\": lock: empty key" [dlock.key= dlock.outcome=error dlock.store=mem error.type=invalid_argument]`,
			`dlock.refresh client Unset [dlock.key=k dlock.outcome=refreshed dlock.store=mem dlock.token=1]`,
			`dlock.release client Unset [dlock.key=k dlock.outcome=released dlock.store=mem dlock.token=1]`,
			`dlock.release client Unset [dlock.key=k dlock.outcome=not_held dlock.store=mem dlock.token=1]`,
		})

		got := tel.metrics(t)
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.acquire.duration", Description: "Duration of lock acquisition attempts.", Unit: "s",
			Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
				hist(acquireBounds, secs(10*time.Millisecond), mem, acquired),
				hist(acquireBounds, 0, mem, contended),
				hist(acquireBounds, 0, mem, failed, invalidArg),
			}},
		})
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.acquisitions", Description: "Lock acquisition attempts, by outcome.", Unit: "{acquisition}",
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
				point(1, mem, acquired), point(1, mem, contended), point(1, mem, failed, invalidArg),
			}},
		})
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.hold.duration", Description: "Time locks were held, from acquisition to release or loss.", Unit: "s",
			Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
				hist(holdBounds, secs(1020*time.Millisecond), mem, released),
			}},
		})
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.locks.held", Description: "Locks acquired and not yet released or lost.", Unit: "{lock}",
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.DataPoint[int64]{
				point(0, mem),
			}},
		})
		if _, ok := got["dlock.locks.lost"]; ok {
			t.Error("dlock.locks.lost recorded, but no lock was lost")
		}
	})
}

func TestWrap_CountsALostLockOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		inner, _ := memlock.New(nil)
		w := otellock.Wrap(inner, tel.options("", otellock.KeyNone))
		defer w.Close()
		ctx := t.Context()
		lk, err := w.Acquire(ctx, "k", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // expired
		if err := lk.Refresh(ctx, time.Second); !errors.Is(err, lock.ErrLockNotHeld) {
			t.Fatalf("refresh: %v", err)
		}
		if err := lk.Release(ctx); !errors.Is(err, lock.ErrLockNotHeld) {
			t.Fatalf("release: %v", err)
		}
		equalLines(t, "spans", tel.spanLines(), []string{
			`dlock.acquire client Unset [dlock.outcome=acquired dlock.token=1]`,
			`dlock.refresh client Unset [dlock.outcome=not_held dlock.token=1]`,
			`dlock.release client Unset [dlock.outcome=not_held dlock.token=1]`,
		})
		got := tel.metrics(t)
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.locks.lost", Description: "Locks found no longer held by a refresh or release.", Unit: "{lock}",
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
				point(1),
			}},
		})
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.hold.duration", Description: "Time locks were held, from acquisition to release or loss.", Unit: "s",
			Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
				hist(holdBounds, 2, lost),
			}},
		})
		assertMetric(t, got, metricdata.Metrics{
			Name: "dlock.locks.held", Description: "Locks acquired and not yet released or lost.", Unit: "{lock}",
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.DataPoint[int64]{
				point(0),
			}},
		})
	})
}

func TestWrap_KeyAttributePolicyAndRedaction(t *testing.T) {
	const key = "tenant-42/invoices"
	sum := sha256.Sum256([]byte(key))
	hash := hex.EncodeToString(sum[:8])
	for _, tc := range []struct {
		name   string
		policy otellock.KeyAttribute
		want   string
	}{
		{"hashed", otellock.KeyHashed, `dlock.acquire client Error "acquire <key>: boom: <key> is on fire" [dlock.key.hash=` + hash + ` dlock.outcome=error error.type=store]`},
		{"raw", otellock.KeyRaw, `dlock.acquire client Error "acquire \"tenant-42/invoices\": boom: tenant-42/invoices is on fire" [dlock.key=tenant-42/invoices dlock.outcome=error error.type=store]`},
		{"none", otellock.KeyNone, `dlock.acquire client Error "acquire <key>: boom: <key> is on fire" [dlock.outcome=error error.type=store]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel := newTelemetry(t)
			s, _ := memlock.NewStore(nil)
			faulty := locktest.NewFaulty(s.Backend())
			inner, _ := lock.New(faulty, nil)
			w := otellock.Wrap(inner, tel.options("", tc.policy))
			defer w.Close()
			faulty.FailNext(1, errors.New("boom: "+key+" is on fire"))
			if _, err := w.Acquire(t.Context(), key, time.Minute); err == nil || errors.Is(err, lock.ErrLockNotAcquired) {
				t.Fatalf("err = %v, want the store's error", err)
			}
			equalLines(t, "spans", tel.spanLines(), []string{tc.want})
			metricdatatest.AssertEqual(t, metricdata.Metrics{
				Name: "dlock.acquisitions", Description: "Lock acquisition attempts, by outcome.", Unit: "{acquisition}",
				Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
					point(1, failed, storeErr),
				}},
			}, tel.metrics(t)["dlock.acquisitions"], metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
		})
	}
}

func TestWrap_HoldWorksThroughTheWrapper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		s, _ := memlock.NewStore(nil)
		faulty := locktest.NewFaulty(s.Backend())
		inner, _ := lock.New(faulty, nil)
		w := otellock.Wrap(inner, tel.options("", otellock.KeyNone))
		defer w.Close()
		ctx := t.Context()
		start := time.Now()
		lk, err := w.Acquire(ctx, "k", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := lk.(lock.Expirer); !ok || !e.Expiry().Equal(start.Add(3*time.Second)) {
			t.Fatalf("the wrapped lock does not forward lock.Expirer (%v)", ok)
		}
		if _, ok := lk.(lock.LossNotifier); !ok {
			t.Fatal("the wrapped lock does not implement lock.LossNotifier")
		}
		held, stop := lock.Hold(ctx, lk, nil) // refreshes every second
		time.Sleep(2500 * time.Millisecond)
		faulty.Cut() // the store pushes the loss
		<-held.Done()
		if got := time.Since(start); got != 2500*time.Millisecond {
			t.Errorf("held context cancelled after %v, want 2.5s (at the pushed loss)", got)
		}
		if cause := context.Cause(held); !errors.Is(cause, lock.ErrLockNotHeld) {
			t.Errorf("cause = %v, want ErrLockNotHeld", cause)
		}
		if err := stop(); !errors.Is(err, locktest.ErrInjected) {
			t.Errorf("stop = %v, want the cut connection's error", err)
		}
		equalLines(t, "spans", tel.spanLines(), []string{
			`dlock.acquire client Unset [dlock.outcome=acquired dlock.token=1]`,
			`dlock.refresh client Unset [dlock.outcome=refreshed dlock.token=1]`,
			`dlock.refresh client Unset [dlock.outcome=refreshed dlock.token=1]`,
			`dlock.release client Error "release <key>: locktest: injected fault" [dlock.outcome=error dlock.token=1 error.type=store]`,
		})
		metricdatatest.AssertEqual(t, metricdata.Metrics{
			Name: "dlock.hold.duration", Description: "Time locks were held, from acquisition to release or loss.", Unit: "s",
			Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
				hist(holdBounds, 2.5, failed),
			}},
		}, tel.metrics(t)["dlock.hold.duration"], metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
	})
}

// plainLocker hands out locks that are neither Expirers nor LossNotifiers.
type plainLocker struct{ lock.Locker }

func (p plainLocker) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lock, error) {
	lk, err := p.Locker.Acquire(ctx, key, ttl)
	if err != nil {
		return nil, err
	}
	return struct{ lock.Lock }{lk}, nil
}

func TestWrap_ExpiryWithoutAnExpirerBelow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		inner, _ := memlock.New(nil)
		w := otellock.Wrap(plainLocker{inner}, tel.options("", otellock.KeyHashed))
		defer w.Close()
		start := time.Now()
		lk, err := w.Acquire(t.Context(), "k", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := lk.(lock.Expirer).Expiry(); !got.Equal(start.Add(3 * time.Second)) {
			t.Errorf("expiry %v after start, want 3s", got.Sub(start))
		}
		if ch := lk.(lock.LossNotifier).NotifyLoss(t.Context()); ch != nil {
			t.Error("NotifyLoss is not nil for a lock that cannot tell")
		}
		time.Sleep(time.Second)
		if err := lk.Refresh(t.Context(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := lk.(lock.Expirer).Expiry(); !got.Equal(start.Add(6 * time.Second)) {
			t.Errorf("expiry %v after start, want 6s", got.Sub(start))
		}
		lk.Release(t.Context())
	})
}

func TestWrap_ForwardsTheWrappedLocker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		s, _ := memlock.NewStore(nil)
		holder, _ := s.NewLocker(nil)
		defer holder.Close()
		inner, _ := s.NewLocker(nil)
		w := otellock.Wrap(inner, tel.options("", otellock.KeyHashed))
		lk, _ := holder.Acquire(t.Context(), "k", time.Hour)
		if h, ok, err := w.Inspect(t.Context(), "k"); err != nil || !ok || h.Token != 1 {
			t.Fatalf("Inspect = %+v, %v, %v; want the holder with token 1", h, ok, err)
		}
		released := make(chan struct{})
		time.AfterFunc(time.Minute, func() { close(released); lk.Release(context.Background()) })
		if err := w.WaitFree(t.Context(), "k"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-released:
		default:
			t.Fatal("WaitFree returned before the release")
		}
		if err := w.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := inner.Ping(t.Context()); !errors.Is(err, lock.ErrClosed) {
			t.Fatalf("the wrapped Locker is not closed: %v", err)
		}
		bare := otellock.Wrap(struct{ lock.Locker }{inner}, tel.options("", otellock.KeyHashed))
		if err := bare.WaitFree(t.Context(), "k"); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("WaitFree without a waiter = %v, want ErrUnsupported", err)
		}
		if _, _, err := bare.Inspect(t.Context(), "k"); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("Inspect without an inspector = %v, want ErrUnsupported", err)
		}
		defer func() {
			if recover() == nil {
				t.Error("Wrap(nil) did not panic")
			}
		}()
		otellock.Wrap(nil, nil)
	})
}

func TestWrap_UnderRetryTracesEveryAttemptAndKeepsTheFastPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		s, _ := memlock.NewStore(nil)
		holder, _ := s.NewLocker(nil)
		defer holder.Close()
		inner, _ := s.NewLocker(nil)
		r := retry.Wrap(otellock.Wrap(inner, tel.options("mem", otellock.KeyNone)),
			&retry.Options{InitialInterval: time.Second, MaxInterval: time.Second})
		defer r.Close()
		held, _ := holder.Acquire(t.Context(), "k", time.Hour)
		time.AfterFunc(2500*time.Millisecond, func() { held.Release(context.Background()) })
		start := time.Now()
		lk, err := r.Acquire(t.Context(), "k", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release(context.Background())
		if got := time.Since(start); got != 2500*time.Millisecond {
			t.Errorf("acquired after %v, want 2.5s: at the release", got)
		}
		equalLines(t, "spans", tel.spanLines(), []string{
			`dlock.acquire client Unset [dlock.outcome=contended dlock.store=mem]`,
			`dlock.acquire client Unset [dlock.outcome=contended dlock.store=mem]`,
			`dlock.acquire client Unset [dlock.outcome=contended dlock.store=mem]`,
			`dlock.acquire client Unset [dlock.outcome=acquired dlock.store=mem dlock.token=2]`,
		})
	})
}

func TestWrap_RawKeysAreValidUTF8AndBounded(t *testing.T) {
	tel := newTelemetry(t)
	inner, _ := memlock.New(nil)
	w := otellock.Wrap(inner, tel.options("", otellock.KeyRaw))
	defer w.Close()
	for _, key := range []string{"a\xffb", "x" + strings.Repeat("é", 300)} {
		lk, err := w.Acquire(t.Context(), key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		lk.Release(t.Context())
	}
	var got []string
	for _, s := range tel.spans.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == "dlock.key" {
				got = append(got, kv.Value.AsString())
			}
		}
	}
	cut := "x" + strings.Repeat("é", 127) + "\uFFFD" // 256 bytes end inside an é
	want := []string{"a\uFFFDb", "a\uFFFDb", cut, cut}
	if !slices.Equal(got, want) {
		t.Errorf("dlock.key values %q, want %q", got, want)
	}
}

func TestWrap_LocksHeldSumsOverLockersUntilClose(t *testing.T) {
	tel := newTelemetry(t)
	s, _ := memlock.NewStore(nil)
	held := func(want int64) {
		t.Helper()
		assertMetric(t, tel.metrics(t), metricdata.Metrics{
			Name: "dlock.locks.held", Description: "Locks acquired and not yet released or lost.", Unit: "{lock}",
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.DataPoint[int64]{
				point(want, mem),
			}},
		})
	}
	var ws []*otellock.Locker
	for range 2 {
		inner, _ := s.NewLocker(nil)
		ws = append(ws, otellock.Wrap(inner, tel.options("mem", otellock.KeyNone)))
	}
	a, _ := ws[0].Acquire(t.Context(), "a", time.Minute)
	ws[0].Acquire(t.Context(), "b", time.Minute)
	ws[1].Acquire(t.Context(), "c", time.Minute)
	held(3)
	a.Release(t.Context())
	held(2)
	ws[0].Close() // its remaining lock is no longer reported
	held(1)
	ws[1].Close()
}
