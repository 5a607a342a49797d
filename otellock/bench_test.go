package otellock_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/otellock"
)

// discard is a span exporter that drops every span: the "no-op exporter"
// behind a real batch span processor.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkAcquireRelease measures one memlock Acquire + Release, bare and
// wrapped. Sub-benchmarks run one after the other in every round of
// -count, so bare and wrapped are interleaved over the run.
//
//   - bare: memlock alone.
//   - sdk: the real SDK, every span sampled and exported through a batch
//     span processor to an exporter that drops them; a meter provider with
//     a manual reader.
//   - sdk-sync: the same with a synchronous span processor (WithSyncer):
//     no hand-off to the batch processor's goroutine, which on a 2-core
//     machine is a large part of a sampled span's cost.
//   - sdk-unsampled: the sdk case with a sampler that records no span
//     (metrics are still recorded).
//   - noop: the otel API's no-op providers (what the globals give before
//     a program configures otel).
func BenchmarkAcquireRelease(b *testing.B) {
	run := func(b *testing.B, l lock.Locker) {
		b.ReportAllocs()
		for b.Loop() {
			acquireRelease(b, l)
		}
	}
	for _, bc := range append([]variant{{"bare", nil}}, variants...) {
		b.Run(bc.name, func(b *testing.B) {
			var l lock.Locker
			l, err := memlock.New(nil)
			if err != nil {
				b.Fatal(err)
			}
			if bc.opts != nil {
				l = otellock.Wrap(l, bc.opts(b))
			}
			defer l.Close()
			run(b, l)
		})
	}
}

type variant struct {
	name string
	opts func(b *testing.B) *otellock.Options // nil: bare
}

func sdkOptions(b *testing.B, sampler sdktrace.Sampler) *otellock.Options {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(discard{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { tp.Shutdown(context.Background()); mp.Shutdown(context.Background()) })
	return &otellock.Options{TracerProvider: tp, MeterProvider: mp, Store: "memory"}
}

var variants = []variant{
	{"sdk", func(b *testing.B) *otellock.Options { return sdkOptions(b, sdktrace.AlwaysSample()) }},
	{"sdk-sync", func(b *testing.B) *otellock.Options {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(discard{}))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { tp.Shutdown(context.Background()); mp.Shutdown(context.Background()) })
		return &otellock.Options{TracerProvider: tp, MeterProvider: mp, Store: "memory"}
	}},
	{"sdk-unsampled", func(b *testing.B) *otellock.Options { return sdkOptions(b, sdktrace.NeverSample()) }},
	{"noop", func(*testing.B) *otellock.Options { return &otellock.Options{} }},
}

func acquireRelease(b *testing.B, l lock.Locker) {
	ctx := context.Background()
	lk, err := l.Acquire(ctx, "bench", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		b.Fatal(err)
	}
}

// processCPU returns the CPU time the process has used (all threads: the
// garbage collector and the span processor's goroutine count too).
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOverhead rotates blocks of 64 bare memlock Acquire + Release,
// 64 wrapped ones, and 64 "floor" operations (see floorOp: the
// OpenTelemetry calls alone, without a lock) in one loop, so that all three
// see the same machine load. It reports, per operation, the wall time
// (bare-ns/op, wrapped-ns/op, added-ns/op = wrapped − bare) and the process
// CPU time, which a loaded machine disturbs less (bare-cpu-ns/op,
// wrapped-cpu-ns/op, floor-cpu-ns/op, and own-cpu-ns/op = wrapped − bare −
// floor: the wrapper's share beyond what OpenTelemetry itself costs). The
// ns/op and allocs the framework prints are mixed averages; see
// BenchmarkAcquireRelease for allocations.
func BenchmarkOverhead(b *testing.B) {
	const block = 64
	for _, bc := range variants {
		b.Run(bc.name, func(b *testing.B) {
			bare, _ := memlock.New(nil)
			defer bare.Close()
			inner, _ := memlock.New(nil)
			o := bc.opts(b)
			wrapped := otellock.Wrap(inner, o)
			defer wrapped.Close()
			arms := [3]func(){
				func() { acquireRelease(b, bare) },
				func() { acquireRelease(b, wrapped) },
				floorOp(o),
			}
			var ops [3]int
			var spent, cpu [3]time.Duration
			i := 0
			start, startCPU := time.Now(), processCPU()
			for b.Loop() {
				which := (i / block) % 3
				arms[which]()
				if i++; i%block == 0 {
					now, nowCPU := time.Now(), processCPU()
					spent[which] += now.Sub(start)
					cpu[which] += nowCPU - startCPU
					ops[which] += block
					start, startCPU = now, nowCPU
				}
			}
			if ops[2] == 0 {
				return
			}
			per := func(d [3]time.Duration, k int) float64 { return float64(d[k]) / float64(ops[k]) }
			b.ReportMetric(per(spent, 0), "bare-ns/op")
			b.ReportMetric(per(spent, 1), "wrapped-ns/op")
			b.ReportMetric(per(spent, 1)-per(spent, 0), "added-ns/op")
			b.ReportMetric(per(cpu, 0), "bare-cpu-ns/op")
			b.ReportMetric(per(cpu, 1), "wrapped-cpu-ns/op")
			b.ReportMetric(per(cpu, 2), "floor-cpu-ns/op")
			b.ReportMetric(per(cpu, 1)-per(cpu, 0)-per(cpu, 2), "own-cpu-ns/op")
		})
	}
}

// floorOp returns an operation that does, without any lock, what the
// wrapper asks of OpenTelemetry for one Acquire + Release: two client spans
// with four attributes each, two histogram records and a counter add with
// precomputed attribute sets, and three clock reads.
func floorOp(o *otellock.Options) func() {
	ctx := context.Background()
	tp, mp := o.TracerProvider, o.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tr := tp.Tracer("floor")
	m := mp.Meter("floor")
	h1, _ := m.Float64Histogram("h1")
	h2, _ := m.Float64Histogram("h2")
	c, _ := m.Int64Counter("c")
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String("dlock.store", "memory"), attribute.String("dlock.outcome", "acquired")))
	rec, add := []metric.RecordOption{set}, []metric.AddOption{set}
	start := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	return func() {
		t0 := time.Now()
		_, span := tr.Start(ctx, "dlock.acquire", start...)
		t1 := time.Now()
		h1.Record(ctx, t1.Sub(t0).Seconds(), rec...)
		c.Add(ctx, 1, add...)
		if span.IsRecording() {
			span.SetAttributes(attribute.String("dlock.store", "memory"), attribute.String("dlock.key.hash", "0123456789abcdef"),
				attribute.String("dlock.outcome", "acquired"), attribute.Int64("dlock.token", 1))
		}
		span.End()
		_, span = tr.Start(ctx, "dlock.release", start...)
		h2.Record(ctx, time.Since(t1).Seconds(), rec...)
		if span.IsRecording() {
			span.SetAttributes(attribute.String("dlock.store", "memory"), attribute.String("dlock.key.hash", "0123456789abcdef"),
				attribute.String("dlock.outcome", "released"), attribute.Int64("dlock.token", 1))
		}
		span.End()
	}
}
