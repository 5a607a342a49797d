package otellock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlockgo/dlock/lock"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/dlockgo/dlock/otellock"

// KeyAttribute says how a lock's key appears on spans. Keys never appear on
// metrics.
type KeyAttribute int

const (
	// KeyHashed records dlock.key.hash: the first 8 bytes of the key's
	// SHA-256, in hexadecimal. Spans of one key can be grouped, and a
	// known key can be looked up by its hash, but the key is not shown.
	// The hash is not salted: a key that can be guessed (a small number,
	// a known user name) can be found by hashing guesses; use KeyNone for
	// those. The default.
	KeyHashed KeyAttribute = iota
	// KeyRaw records dlock.key: the key itself (cut to 256 bytes).
	KeyRaw
	// KeyNone records no key.
	KeyNone
)

// Options configure [Wrap]. The zero value, and nil, mean the defaults.
type Options struct {
	// TracerProvider makes the tracer. Default: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter. Default: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Store names the store in the dlock.store attribute ("redis",
	// "postgres", …). Default: no attribute.
	Store string
	// Key says how keys appear on spans. Default: [KeyHashed], because
	// keys often carry names, e-mail addresses or tenant identifiers, and
	// traces travel to places with other access rules than the store.
	Key KeyAttribute
}

// Attribute keys.
const (
	attrStore     = attribute.Key("dlock.store")
	attrKey       = attribute.Key("dlock.key")
	attrKeyHash   = attribute.Key("dlock.key.hash")
	attrOutcome   = attribute.Key("dlock.outcome")
	attrToken     = attribute.Key("dlock.token")
	attrErrorType = attribute.Key("error.type")
)

const maxKeyAttr = 256

// errClass is the error.type of an error.
type errClass int

const (
	classCanceled errClass = iota
	classDeadline
	classClosed
	classInvalid
	classStore
	nClasses
)

var classNames = [nClasses]string{"canceled", "deadline_exceeded", "closed", "invalid_argument", "store"}

func classify(err error) errClass {
	switch {
	case errors.Is(err, context.Canceled):
		return classCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return classDeadline
	case errors.Is(err, lock.ErrClosed):
		return classClosed
	case errors.Is(err, lock.ErrEmptyKey), errors.Is(err, lock.ErrKeyTooLong), errors.Is(err, lock.ErrInvalidTTL):
		return classInvalid
	}
	return classStore
}

// How a hold ended.
type holdEnd int

const (
	endReleased holdEnd = iota
	endLost
	endError
	nEnds
)

// Locker is a [lock.Locker] that traces and measures the Locker it wraps.
// It also implements [lock.Waiter] by forwarding. It is safe for
// concurrent use.
type Locker struct {
	l      lock.Locker
	key    KeyAttribute
	tracer trace.Tracer
	start  []trace.SpanStartOption

	acqDur   metric.Float64Histogram
	acqs     metric.Int64Counter
	holdDur  metric.Float64Histogram
	held     metric.Int64UpDownCounter
	lost     metric.Int64Counter
	storeSet metric.MeasurementOption

	// Precomputed attribute sets, by outcome.
	acqOK, acqBusy metric.MeasurementOption
	acqErr         [nClasses]metric.MeasurementOption
	holdEnded      [nEnds]metric.MeasurementOption
}

var (
	_ lock.Locker = (*Locker)(nil)
	_ lock.Waiter = (*Locker)(nil)
)

// Wrap returns a Locker that adds spans and metrics to l. It panics when l
// is nil. Instruments the meter provider refuses (it should not, for these
// names) are reported to otel.Handle and replaced by no-op ones.
func Wrap(l lock.Locker, opts *Options) *Locker {
	if l == nil {
		panic("otellock: Wrap of a nil Locker")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	w := &Locker{l: l, key: o.Key, tracer: o.TracerProvider.Tracer(ScopeName)}
	var base []attribute.KeyValue
	if o.Store != "" {
		base = append(base, attrStore.String(o.Store))
	}
	w.start = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	if len(base) > 0 {
		w.start = append(w.start, trace.WithAttributes(base...))
	}
	set := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), kv...)...))
	}
	w.storeSet = set()
	w.acqOK = set(attrOutcome.String("acquired"))
	w.acqBusy = set(attrOutcome.String("contended"))
	for c := range nClasses {
		w.acqErr[c] = set(attrOutcome.String("error"), attrErrorType.String(classNames[c]))
	}
	for e, name := range [nEnds]string{"released", "lost", "error"} {
		w.holdEnded[e] = set(attrOutcome.String(name))
	}

	m := o.MeterProvider.Meter(ScopeName)
	var errs [5]error
	w.acqDur, errs[0] = m.Float64Histogram("dlock.acquire.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of lock acquisition attempts."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
			0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	w.acqs, errs[1] = m.Int64Counter("dlock.acquisitions",
		metric.WithUnit("{acquisition}"),
		metric.WithDescription("Lock acquisition attempts, by outcome."))
	w.holdDur, errs[2] = m.Float64Histogram("dlock.hold.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time locks were held, from acquisition to release or loss."),
		metric.WithExplicitBucketBoundaries(0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600))
	w.held, errs[3] = m.Int64UpDownCounter("dlock.locks.held",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Locks acquired and not yet released or lost."))
	w.lost, errs[4] = m.Int64Counter("dlock.locks.lost",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Locks found no longer held by a refresh or release."))
	if err := errors.Join(errs[:]...); err != nil {
		otel.Handle(fmt.Errorf("otellock: %w", err))
		w.fillNoop()
	}
	return w
}

// keyAttr returns the span attribute for key under the policy, and false
// for KeyNone.
func (w *Locker) keyAttr(key string) (attribute.KeyValue, bool) {
	switch w.key {
	case KeyRaw:
		if len(key) > maxKeyAttr {
			key = key[:maxKeyAttr]
		}
		return attrKey.String(key), true
	case KeyNone:
		return attribute.KeyValue{}, false
	}
	sum := sha256.Sum256([]byte(key))
	return attrKeyHash.String(hex.EncodeToString(sum[:8])), true
}

// errStatus sets span's status for err, keeping the key out of the
// message unless the policy shows keys.
func (w *Locker) errStatus(span trace.Span, key string, err error) {
	c := classify(err)
	msg := err.Error()
	if w.key != KeyRaw {
		msg = redact(msg, key)
	}
	span.SetAttributes(attrOutcome.String("error"), attrErrorType.String(classNames[c]))
	span.SetStatus(codes.Error, msg)
}

// redact replaces key in msg, quoted as package lock quotes keys in its
// errors and, when long enough not to match by chance, raw.
func redact(msg, key string) string {
	if key == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, lock.QuoteKey(key), "<key>")
	if len(key) >= 8 {
		msg = strings.ReplaceAll(msg, key, "<key>")
	}
	return msg
}

// Acquire implements [lock.Locker] with a dlock.acquire span and the
// acquisition metrics.
func (w *Locker) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lock, error) {
	ctx, span := w.tracer.Start(ctx, "dlock.acquire", w.start...)
	rec := span.IsRecording()
	var ka attribute.KeyValue
	var hasKA bool
	if rec {
		if ka, hasKA = w.keyAttr(key); hasKA {
			span.SetAttributes(ka)
		}
	}
	start := time.Now()
	lk, err := w.l.Acquire(ctx, key, ttl)
	end := time.Now()
	dur := end.Sub(start).Seconds()
	var mo metric.MeasurementOption
	switch {
	case err == nil:
		mo = w.acqOK
		if rec {
			span.SetAttributes(attrOutcome.String("acquired"), attrToken.Int64(int64(lk.Token())))
		}
	case errors.Is(err, lock.ErrLockNotAcquired):
		mo = w.acqBusy
		if rec {
			span.SetAttributes(attrOutcome.String("contended"))
		}
	default:
		mo = w.acqErr[classify(err)]
		if rec {
			w.errStatus(span, key, err)
		}
	}
	w.acqDur.Record(ctx, dur, mo)
	w.acqs.Add(ctx, 1, mo)
	if err != nil {
		span.End()
		return nil, err
	}
	h := &handle{w: w, lk: lk, keyAttr: ka, hasKeyAttr: hasKA, acquired: end}
	h.exp, _ = lk.(lock.Expirer)
	h.loss, _ = lk.(lock.LossNotifier)
	if h.exp == nil {
		h.expiry = start.Add(lk.TTL())
	}
	w.held.Add(ctx, 1, w.storeSet)
	span.End()
	return h, nil
}

// Ping implements [lock.Locker] by calling the wrapped Locker.
func (w *Locker) Ping(ctx context.Context) error { return w.l.Ping(ctx) }

// Close implements [lock.Locker]: it closes the wrapped Locker.
func (w *Locker) Close() error { return w.l.Close() }

// WaitFree implements [lock.Waiter] by calling the wrapped Locker's, and
// returns an error wrapping [errors.ErrUnsupported] when it has none.
func (w *Locker) WaitFree(ctx context.Context, key string) error {
	if wt, ok := w.l.(lock.Waiter); ok {
		return wt.WaitFree(ctx, key)
	}
	return fmt.Errorf("wait %s: %w", lock.QuoteKey(key), errors.ErrUnsupported)
}

// handle is a Lock from Locker.Acquire.
type handle struct {
	w          *Locker
	lk         lock.Lock
	keyAttr    attribute.KeyValue
	hasKeyAttr bool
	acquired   time.Time
	exp        lock.Expirer      // nil when lk is not one
	loss       lock.LossNotifier // nil when lk is not one
	ended      atomic.Bool

	mu     sync.Mutex
	expiry time.Time // when exp is nil: start of the last success + TTL
}

var (
	_ lock.Lock         = (*handle)(nil)
	_ lock.Expirer      = (*handle)(nil)
	_ lock.LossNotifier = (*handle)(nil)
)

func (h *handle) Key() string        { return h.lk.Key() }
func (h *handle) TTL() time.Duration { return h.lk.TTL() }
func (h *handle) Token() uint64      { return h.lk.Token() }

// Expiry implements [lock.Expirer]: the wrapped lock's when it has one,
// else the start of the last successful acquire or refresh plus the TTL.
func (h *handle) Expiry() time.Time {
	if h.exp != nil {
		return h.exp.Expiry()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.expiry
}

// NotifyLoss implements [lock.LossNotifier] by forwarding; nil when the
// wrapped lock cannot tell.
func (h *handle) NotifyLoss(ctx context.Context) <-chan struct{} {
	if h.loss == nil {
		return nil
	}
	return h.loss.NotifyLoss(ctx)
}

func (h *handle) startSpan(ctx context.Context, name string) (context.Context, trace.Span, bool) {
	ctx, span := h.w.tracer.Start(ctx, name, h.w.start...)
	rec := span.IsRecording()
	if rec {
		ka, ok := h.keyAttr, h.hasKeyAttr
		if !ok {
			ka, ok = h.w.keyAttr(h.lk.Key())
		}
		if ok {
			span.SetAttributes(ka, attrToken.Int64(int64(h.lk.Token())))
		} else {
			span.SetAttributes(attrToken.Int64(int64(h.lk.Token())))
		}
	}
	return ctx, span, rec
}

// end ends the hold once: the first call counts.
func (h *handle) end(ctx context.Context, how holdEnd) {
	if h.ended.Swap(true) {
		return
	}
	w := h.w
	w.held.Add(ctx, -1, w.storeSet)
	w.holdDur.Record(ctx, time.Since(h.acquired).Seconds(), w.holdEnded[how])
	if how == endLost {
		w.lost.Add(ctx, 1, w.storeSet)
	}
}

// Refresh implements [lock.Lock] with a dlock.refresh span.
func (h *handle) Refresh(ctx context.Context, ttl time.Duration) error {
	ctx, span, rec := h.startSpan(ctx, "dlock.refresh")
	defer span.End()
	start := time.Now()
	err := h.lk.Refresh(ctx, ttl)
	switch {
	case err == nil:
		if h.exp == nil {
			h.mu.Lock()
			if e := start.Add(h.lk.TTL()); e.After(h.expiry) {
				h.expiry = e
			}
			h.mu.Unlock()
		}
		if rec {
			span.SetAttributes(attrOutcome.String("refreshed"))
		}
	case errors.Is(err, lock.ErrLockNotHeld):
		h.end(ctx, endLost)
		if rec {
			span.SetAttributes(attrOutcome.String("not_held"))
		}
	default:
		if rec {
			h.w.errStatus(span, h.lk.Key(), err)
		}
	}
	return err
}

// Release implements [lock.Lock] with a dlock.release span; it ends the
// hold.
func (h *handle) Release(ctx context.Context) error {
	ctx, span, rec := h.startSpan(ctx, "dlock.release")
	defer span.End()
	err := h.lk.Release(ctx)
	switch {
	case err == nil:
		h.end(ctx, endReleased)
		if rec {
			span.SetAttributes(attrOutcome.String("released"))
		}
	case errors.Is(err, lock.ErrLockNotHeld):
		h.end(ctx, endLost)
		if rec {
			span.SetAttributes(attrOutcome.String("not_held"))
		}
	default:
		h.end(ctx, endError)
		if rec {
			h.w.errStatus(span, h.lk.Key(), err)
		}
	}
	return err
}

// fillNoop replaces the instruments a meter provider did not make.
func (w *Locker) fillNoop() {
	var m noop.Meter
	if w.acqDur == nil {
		w.acqDur, _ = m.Float64Histogram("")
	}
	if w.acqs == nil {
		w.acqs, _ = m.Int64Counter("")
	}
	if w.holdDur == nil {
		w.holdDur, _ = m.Float64Histogram("")
	}
	if w.held == nil {
		w.held, _ = m.Int64UpDownCounter("")
	}
	if w.lost == nil {
		w.lost, _ = m.Int64Counter("")
	}
}
