package otellock_test

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/otellock"
	"github.com/dlockgo/dlock/retry"
)

// Wrap a Locker with the providers your program already configured (nil
// options use the otel globals). Here an in-memory recorder and a manual
// reader show what is produced.
func ExampleWrap() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(ctx)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)

	store, _ := memlock.NewStore(nil)
	inner, _ := store.NewLocker(nil)
	locker := otellock.Wrap(inner, &otellock.Options{
		TracerProvider: tp, MeterProvider: mp, Store: "memory",
	})
	defer locker.Close()
	other, _ := store.NewLocker(nil)
	defer other.Close()

	lk, _ := locker.Acquire(ctx, "invoices", time.Minute)
	busy, _ := other.Acquire(ctx, "reports", time.Minute)
	_, _ = locker.Acquire(ctx, "reports", time.Minute) // contended
	lk.Release(ctx)
	busy.Release(ctx)

	for _, s := range spans.Ended() {
		set := attribute.NewSet(s.Attributes()...)
		outcome, _ := set.Value("dlock.outcome")
		fmt.Println(s.Name(), outcome.AsString())
	}
	var rm metricdata.ResourceMetrics
	reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "dlock.acquisitions" {
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				outcome, _ := p.Attributes.Value("dlock.outcome")
				fmt.Printf("%s{outcome=%s} = %d\n", m.Name, outcome.AsString(), p.Value)
			}
		}
	}
	// Unordered output:
	// dlock.acquire acquired
	// dlock.acquire contended
	// dlock.release released
	// dlock.acquisitions{outcome=acquired} = 1
	// dlock.acquisitions{outcome=contended} = 1
}

// Wrapped under retry, every attempt is a span; wrapped around retry, the
// whole wait is one. Either way the wait for a release still uses the
// store's fast path.
func ExampleWrap_withRetry() {
	ctx := context.Background()
	inner, _ := memlock.New(nil)
	perAttempt := retry.Wrap(otellock.Wrap(inner, &otellock.Options{Store: "memory"}), nil)
	defer perAttempt.Close()

	lk, err := perAttempt.Acquire(ctx, "nightly-report", time.Minute)
	if err != nil {
		panic(err)
	}
	defer lk.Release(ctx)
	fmt.Println("token", lk.Token())
	// Output: token 1
}
