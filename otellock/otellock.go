package otellock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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
	// KeyRaw records dlock.key: the key itself, cut to 256 bytes, with
	// bytes that are not UTF-8 replaced by U+FFFD.
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
// It also implements [lock.Waiter] and [lock.Inspector] by forwarding. It is safe for
// concurrent use.
type Locker struct {
	l      lock.Locker
	key    KeyAttribute
	tracer trace.Tracer
	start  []trace.SpanStartOption
	store  []attribute.KeyValue // dlock.store, or nothing

	acqDur  metric.Float64Histogram
	acqs    metric.Int64Counter
	holdDur metric.Float64Histogram
	lost    metric.Int64Counter
	// dlock.locks.held is observed at collection from nHeld, so that
	// acquiring and releasing cost an atomic add, not two measurements.
	nHeld     atomic.Int64
	heldReg   metric.Registration // nil when the provider refused
	closeOnce sync.Once

	// Precomputed attribute sets, by outcome, as ready-made option slices
	// so that recording allocates nothing.
	storeOnly      mopts
	acqOK, acqBusy mopts
	acqErr         [nClasses]mopts
	holdEnded      [nEnds]mopts
}

// mopts is one attribute set as options of Add and of Record.
type mopts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newMopts(set attribute.Set) mopts {
	o := metric.WithAttributeSet(set)
	return mopts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

var (
	_ lock.Locker    = (*Locker)(nil)
	_ lock.Waiter    = (*Locker)(nil)
	_ lock.Inspector = (*Locker)(nil)
)

// Wrap returns a Locker that adds spans and metrics to l. It panics when l
// is nil. Instruments the meter provider refuses (it should not, for these
// names) are reported to otel.Handle and replaced by no-op ones.
//
// The meter provider keeps the Locker's dlock.locks.held callback until
// [Locker.Close]: close every wrapped Locker you stop using.
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
	if o.Store != "" {
		w.store = []attribute.KeyValue{attrStore.String(o.Store)}
	}
	// Attributes are set once a span is known to record, never through
	// start options, which would copy them for unsampled spans too.
	w.start = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	set := func(kv ...attribute.KeyValue) mopts {
		return newMopts(attribute.NewSet(append(slices.Clip(w.store), kv...)...))
	}
	w.storeOnly = set()
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
	held, err := m.Int64ObservableUpDownCounter("dlock.locks.held",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Locks acquired and not yet released or lost."))
	if err == nil {
		storeObs := metric.WithAttributeSet(attribute.NewSet(w.store...))
		w.heldReg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(held, w.nHeld.Load(), storeObs)
			return nil
		}, held)
	}
	errs[3] = err
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
		// Keys are bytes; exporters need UTF-8 (OTLP drops a batch that
		// is not).
		return attrKey.String(strings.ToValidUTF8(key, "\uFFFD")), true
	case KeyNone:
		return attribute.KeyValue{}, false
	}
	sum := sha256.Sum256([]byte(key))
	return attrKeyHash.String(hex.EncodeToString(sum[:8])), true
}

// spanAttrs starts the attributes of a recording span: the store's, and
// the key's when ok.
func (w *Locker) spanAttrs(ka attribute.KeyValue, ok bool) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, w.store...)
	if ok {
		attrs = append(attrs, ka)
	}
	return attrs
}

// finish sets attrs on a recording span and, for a non-nil err, the error
// attributes and status, keeping the key out of the message unless the
// policy shows keys. It ends span.
func (w *Locker) finish(span trace.Span, key string, attrs []attribute.KeyValue, err error) {
	if err != nil {
		attrs = append(attrs, attrOutcome.String("error"), attrErrorType.String(classNames[classify(err)]))
		msg := err.Error()
		if w.key != KeyRaw {
			msg = redact(msg, key)
		}
		span.SetStatus(codes.Error, msg)
	}
	span.SetAttributes(attrs...)
	span.End()
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
	start := time.Now()
	lk, err := w.l.Acquire(ctx, key, ttl)
	end := time.Now()
	var mo *mopts
	switch {
	case err == nil:
		mo = &w.acqOK
	case errors.Is(err, lock.ErrLockNotAcquired):
		mo = &w.acqBusy
	default:
		mo = &w.acqErr[classify(err)]
	}
	w.acqDur.Record(ctx, end.Sub(start).Seconds(), mo.rec...)
	w.acqs.Add(ctx, 1, mo.add...)
	var ka attribute.KeyValue
	var hasKA bool
	if span.IsRecording() {
		ka, hasKA = w.keyAttr(key)
		attrs := w.spanAttrs(ka, hasKA)
		spanErr := err
		switch {
		case err == nil:
			attrs = append(attrs, attrOutcome.String("acquired"), attrToken.Int64(int64(lk.Token())))
		case mo == &w.acqBusy:
			attrs = append(attrs, attrOutcome.String("contended"))
			spanErr = nil // contention is not an error
		}
		w.finish(span, key, attrs, spanErr)
	} else {
		span.End()
	}
	if err != nil {
		return nil, err
	}
	h := &handle{w: w, lk: lk, keyAttr: ka, hasKeyAttr: hasKA, acquired: end}
	h.exp, _ = lk.(lock.Expirer)
	h.loss, _ = lk.(lock.LossNotifier)
	if h.exp == nil {
		h.expiry = start.Add(lk.TTL())
	}
	w.nHeld.Add(1)
	return h, nil
}

// Ping implements [lock.Locker] by calling the wrapped Locker.
func (w *Locker) Ping(ctx context.Context) error { return w.l.Ping(ctx) }

// Close implements [lock.Locker]: it stops reporting dlock.locks.held
// for this Locker and closes the wrapped Locker.
func (w *Locker) Close() error {
	w.closeOnce.Do(func() {
		if w.heldReg != nil {
			if err := w.heldReg.Unregister(); err != nil {
				otel.Handle(fmt.Errorf("otellock: %w", err))
			}
		}
	})
	return w.l.Close()
}

// WaitFree implements [lock.Waiter] by calling the wrapped Locker's, and
// returns an error wrapping [errors.ErrUnsupported] when it has none.
func (w *Locker) WaitFree(ctx context.Context, key string) error {
	if wt, ok := w.l.(lock.Waiter); ok {
		return wt.WaitFree(ctx, key)
	}
	return fmt.Errorf("wait %s: %w", lock.QuoteKey(key), errors.ErrUnsupported)
}

// Inspect implements [lock.Inspector] by calling the wrapped Locker's, and
// returns an error wrapping [errors.ErrUnsupported] when it has none.
func (w *Locker) Inspect(ctx context.Context, key string) (lock.Holder, bool, error) {
	if in, ok := w.l.(lock.Inspector); ok {
		return in.Inspect(ctx, key)
	}
	return lock.Holder{}, false, fmt.Errorf("inspect %s: %w", lock.QuoteKey(key), errors.ErrUnsupported)
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

// endSpan ends a recording span of h's with the key and token attributes,
// then kv, and err's status.
func (h *handle) endSpan(span trace.Span, err error, kv ...attribute.KeyValue) {
	if !span.IsRecording() {
		span.End()
		return
	}
	ka, ok := h.keyAttr, h.hasKeyAttr
	if !ok {
		ka, ok = h.w.keyAttr(h.lk.Key())
	}
	attrs := append(h.w.spanAttrs(ka, ok), attrToken.Int64(int64(h.lk.Token())))
	h.w.finish(span, h.lk.Key(), append(attrs, kv...), err)
}

// end ends the hold once: the first call counts.
func (h *handle) end(ctx context.Context, how holdEnd) {
	if h.ended.Swap(true) {
		return
	}
	w := h.w
	w.nHeld.Add(-1)
	w.holdDur.Record(ctx, time.Since(h.acquired).Seconds(), w.holdEnded[how].rec...)
	if how == endLost {
		w.lost.Add(ctx, 1, w.storeOnly.add...)
	}
}

// Refresh implements [lock.Lock] with a dlock.refresh span.
func (h *handle) Refresh(ctx context.Context, ttl time.Duration) error {
	ctx, span := h.w.tracer.Start(ctx, "dlock.refresh", h.w.start...)
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
		h.endSpan(span, nil, attrOutcome.String("refreshed"))
	case errors.Is(err, lock.ErrLockNotHeld):
		h.end(ctx, endLost)
		h.endSpan(span, nil, attrOutcome.String("not_held"))
	default:
		h.endSpan(span, err)
	}
	return err
}

// Release implements [lock.Lock] with a dlock.release span; it ends the
// hold.
func (h *handle) Release(ctx context.Context) error {
	ctx, span := h.w.tracer.Start(ctx, "dlock.release", h.w.start...)
	err := h.lk.Release(ctx)
	switch {
	case err == nil:
		h.end(ctx, endReleased)
		h.endSpan(span, nil, attrOutcome.String("released"))
	case errors.Is(err, lock.ErrLockNotHeld):
		h.end(ctx, endLost)
		h.endSpan(span, nil, attrOutcome.String("not_held"))
	default:
		h.end(ctx, endError)
		h.endSpan(span, err)
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
	if w.lost == nil {
		w.lost, _ = m.Int64Counter("")
	}
}
