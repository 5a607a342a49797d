package otellock_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

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
//   - sdk-unsampled: the same, with a sampler that records no span
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

// BenchmarkOverhead alternates blocks of 64 bare and 64 wrapped memlock
// Acquire + Release in one loop, so that both see the same machine load,
// and reports bare-ns/op, wrapped-ns/op and their difference, added-ns/op,
// in wall time, and the process CPU time of each (bare-cpu-ns/op,
// wrapped-cpu-ns/op), which a loaded machine disturbs less.
// (The ns/op the framework prints is the mixed average; see
// BenchmarkAcquireRelease for allocations.)
func BenchmarkOverhead(b *testing.B) {
	const block = 64
	for _, bc := range variants {
		b.Run(bc.name, func(b *testing.B) {
			bare, _ := memlock.New(nil)
			defer bare.Close()
			inner, _ := memlock.New(nil)
			wrapped := otellock.Wrap(inner, bc.opts(b))
			defer wrapped.Close()
			ls := [2]lock.Locker{bare, wrapped}
			var ops [2]int
			var spent, cpu [2]time.Duration
			i := 0
			start, startCPU := time.Now(), processCPU()
			for b.Loop() {
				which := (i / block) & 1
				acquireRelease(b, ls[which])
				if i++; i%block == 0 {
					now, nowCPU := time.Now(), processCPU()
					spent[which] += now.Sub(start)
					cpu[which] += nowCPU - startCPU
					ops[which] += block
					start, startCPU = now, nowCPU
				}
			}
			if ops[1] == 0 {
				return
			}
			per := func(d time.Duration, n int) float64 { return float64(d) / float64(n) }
			b.ReportMetric(per(spent[0], ops[0]), "bare-ns/op")
			b.ReportMetric(per(spent[1], ops[1]), "wrapped-ns/op")
			b.ReportMetric(per(spent[1], ops[1])-per(spent[0], ops[0]), "added-ns/op")
			b.ReportMetric(per(cpu[0], ops[0]), "bare-cpu-ns/op")
			b.ReportMetric(per(cpu[1], ops[1]), "wrapped-cpu-ns/op")
		})
	}
}
