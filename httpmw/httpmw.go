package httpmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/retry"
)

// ErrNoKey means the request carries no resource key (an empty path value
// or header, or an error from [Options.Key]).
var ErrNoKey = errors.New("httpmw: no resource key in the request")

// Options configure the middleware. Exactly one of PathValue, Header and
// Key must be set.
type Options struct {
	// PathValue names the ServeMux wildcard that holds the resource key
	// (r.PathValue(PathValue)), as in "POST /accounts/{id}".
	PathValue string
	// Header names the request header that holds the resource key.
	Header string
	// Key returns the resource key of a request; an error is answered
	// with 400.
	Key func(r *http.Request) (string, error)

	// KeyPrefix is put before the resource key to make the lock key.
	// Default: "http/".
	KeyPrefix string
	// Methods are the methods that take the lock; others pass straight
	// through. Default: every method but GET, HEAD, OPTIONS and TRACE.
	Methods []string
	// TTL of the lock, refreshed while the handler runs. Default: 30s.
	TTL time.Duration
	// Wait is how long a request waits for a busy resource before it is
	// answered with BusyStatus. Default: 0, fail fast.
	Wait time.Duration
	// Retry configures the waiting (with package retry). Default: retry's
	// defaults, bounded by Wait.
	Retry *retry.Options
	// BusyStatus is the status of the answer to a busy resource.
	// Default: 409 Conflict.
	BusyStatus int
	// RetryAfter is the Retry-After sent with BusyStatus, rounded up to
	// whole seconds. Default: 1s.
	RetryAfter time.Duration
	// TokenHeader, when set, names a response header that carries the
	// lock's fencing token (set before the handler runs).
	TokenHeader string
	// ErrorHandler, when set, answers the requests the middleware refuses.
	// err wraps lock.ErrLockNotAcquired (busy), ErrNoKey or a key error of
	// package lock (bad key), or the store's error. Default: the statuses
	// in the package documentation.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives store failures. Default: silent.
	Logger *slog.Logger
	// MeterProvider supplies the meter for the middleware's metrics.
	// Default: the OpenTelemetry global provider.
	MeterProvider metric.MeterProvider
}

type mw struct {
	locker  lock.Locker
	o       Options
	key     func(*http.Request) (string, error)
	methods map[string]bool
	retry   retry.Options
	log     *slog.Logger
	wait    metric.Float64Histogram
	reqs    metric.Int64Counter
}

// New returns middleware that serialises requests per resource through
// locker. It panics, with a message starting "httpmw:", on a nil locker or
// invalid options — as routers' middleware constructors do, since they are
// called once at start-up.
func New(locker lock.Locker, opts *Options) func(http.Handler) http.Handler {
	m, err := newMW(locker, opts)
	if err != nil {
		panic(err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
	}
}

func newMW(locker lock.Locker, opts *Options) (*mw, error) {
	if locker == nil {
		return nil, fmt.Errorf("httpmw: %w", lock.ErrNilDatabaseClient)
	}
	if opts == nil {
		return nil, fmt.Errorf("httpmw: %w: set one of PathValue, Header and Key", lock.ErrNilConfig)
	}
	o := *opts
	m := &mw{locker: locker, o: o}
	n := 0
	if o.PathValue != "" {
		n++
		m.key = func(r *http.Request) (string, error) { return r.PathValue(o.PathValue), nil }
	}
	if o.Header != "" {
		n++
		m.key = func(r *http.Request) (string, error) { return r.Header.Get(o.Header), nil }
	}
	if o.Key != nil {
		n++
		m.key = o.Key
	}
	if n != 1 {
		return nil, errors.New("httpmw: set exactly one of PathValue, Header and Key")
	}
	if o.TTL < 0 || o.Wait < 0 || o.RetryAfter < 0 {
		return nil, fmt.Errorf("httpmw: %w: negative TTL, Wait or RetryAfter", lock.ErrInvalidTTL)
	}
	if o.BusyStatus != 0 && (o.BusyStatus < 400 || o.BusyStatus > 599) {
		return nil, fmt.Errorf("httpmw: BusyStatus %d is not an error status", o.BusyStatus)
	}
	if m.o.KeyPrefix == "" {
		m.o.KeyPrefix = "http/"
	}
	if m.o.TTL == 0 {
		m.o.TTL = 30 * time.Second
	}
	if m.o.BusyStatus == 0 {
		m.o.BusyStatus = http.StatusConflict
	}
	if m.o.RetryAfter == 0 {
		m.o.RetryAfter = time.Second
	}
	if o.Methods != nil {
		m.methods = make(map[string]bool, len(o.Methods))
		for _, meth := range o.Methods {
			m.methods[meth] = true
		}
	}
	if o.Retry != nil {
		m.retry = *o.Retry
	}
	m.log = o.Logger
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter("github.com/dlockgo/dlock/httpmw")
	var err error
	if m.wait, err = meter.Float64Histogram("dlock.http.lock.wait.duration",
		metric.WithDescription("Time requests spent getting their resource's lock, by outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if m.reqs, err = meter.Int64Counter("dlock.http.lock.requests",
		metric.WithDescription("Requests that asked for a resource lock, by outcome: locked, busy, bad_key, store_error, canceled."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mw) locks(method string) bool {
	if m.methods != nil {
		return m.methods[method]
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

func (m *mw) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if !m.locks(r.Method) {
		next.ServeHTTP(w, r)
		return
	}
	key, err := m.key(r)
	if err == nil && key == "" {
		err = ErrNoKey
	} else if err != nil {
		err = fmt.Errorf("%w: %w", ErrNoKey, err)
	}
	if err == nil {
		key = m.o.KeyPrefix + key
		err = lock.ValidateKey(key)
	}
	if err != nil {
		m.count(r.Context(), "bad_key")
		m.refuse(w, r, err)
		return
	}

	start := time.Now()
	lk, err := m.acquire(r.Context(), key)
	outcome := "locked"
	switch {
	case err == nil:
	case r.Context().Err() != nil:
		outcome = "canceled" // the client went away: nobody to answer
	case errors.Is(err, lock.ErrLockNotAcquired):
		outcome = "busy"
	default:
		outcome = "store_error"
		m.log.ErrorContext(r.Context(), "httpmw: lock store failed", slog.String("key", lock.QuoteKey(key)), slog.Any("err", err))
	}
	m.wait.Record(context.WithoutCancel(r.Context()), time.Since(start).Seconds(), metric.WithAttributes(attribute.String("dlock.http.outcome", outcome)))
	m.count(r.Context(), outcome)
	if err != nil {
		if outcome != "canceled" {
			m.refuse(w, r, err)
		}
		return
	}

	held, stop := lock.Hold(r.Context(), lk, nil)
	defer stop() // also when next panics; the panic goes on after it
	if m.o.TokenHeader != "" {
		w.Header().Set(m.o.TokenHeader, strconv.FormatUint(lk.Token(), 10))
	}
	next.ServeHTTP(w, r.WithContext(held))
}

func (m *mw) acquire(ctx context.Context, key string) (lock.Lock, error) {
	if m.o.Wait == 0 {
		return m.locker.Acquire(ctx, key, m.o.TTL)
	}
	wctx, cancel := context.WithTimeout(ctx, m.o.Wait)
	defer cancel()
	return retry.Acquire(wctx, m.locker, key, m.o.TTL, &m.retry)
}

func (m *mw) count(ctx context.Context, outcome string) {
	m.reqs.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("dlock.http.outcome", outcome)))
}

// refuse answers a request the middleware will not pass on.
func (m *mw) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if m.o.ErrorHandler != nil {
		m.o.ErrorHandler(w, r, err)
		return
	}
	switch {
	case errors.Is(err, lock.ErrLockNotAcquired):
		secs := int64((m.o.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		http.Error(w, "the resource is busy; try again later", m.o.BusyStatus)
	case errors.Is(err, ErrNoKey), errors.Is(err, lock.ErrEmptyKey), errors.Is(err, lock.ErrKeyTooLong):
		http.Error(w, "bad resource key", http.StatusBadRequest)
	default:
		http.Error(w, "the lock service is unavailable", http.StatusServiceUnavailable)
	}
}

// TokenFrom returns the fencing token of the lock held for the request
// whose context is ctx, and false when the request holds none.
func TokenFrom(ctx context.Context) (uint64, bool) { return lock.TokenFrom(ctx) }
