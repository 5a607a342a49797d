package cron

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/dlockgo/dlock/lock"
)

// Options configure a [Scheduler]. The zero value, and nil, mean the
// defaults.
type Options struct {
	// Location is the time zone of specs without CRON_TZ=. Every replica
	// must use the same one. Default: UTC (not time.Local, which may differ
	// between machines).
	Location *time.Location
	// KeyPrefix is put before every lock key. Default: "cron/".
	KeyPrefix string
	// Now returns this replica's idea of the current time. Replicas' clocks
	// disagree by some skew; the tick locks and MinHold absorb it. Default:
	// time.Now. Tests inject skewed clocks here.
	Now func() time.Time
	// Logger receives a record per tick run, skipped or failed. Default:
	// silent.
	Logger *slog.Logger
	// MeterProvider supplies the meter for the job metrics. Default: the
	// OpenTelemetry global provider.
	MeterProvider metric.MeterProvider
}

// JobOptions configure one job. The zero value, and nil, mean the defaults.
type JobOptions struct {
	// MinHold is how long after its scheduled time a tick's lock is held at
	// least, even when the job finished sooner, so that a replica whose
	// clock lags cannot run the same tick again once the fast one released.
	// It must exceed the largest clock skew between replicas. Default: half
	// the interval between ticks.
	MinHold time.Duration
	// MaxHold is the TTL of a tick's lock; it is refreshed while the job
	// runs (see [lock.Hold]), so it bounds how long a crashed replica's lock
	// outlives it. Default: MinHold, at least 10s.
	MaxHold time.Duration
	// Timeout cancels the job's context after this long. Default: none.
	Timeout time.Duration
	// SkipIfRunning skips a tick while the job's previous run is still going
	// on any replica (a second lock, on the job's name). Default: ticks may
	// overlap.
	SkipIfRunning bool
}

// A Scheduler runs named jobs on cron schedules so that each tick of a job
// runs on exactly one of the replicas that share its Locker's store. Its
// methods are safe for concurrent use.
type Scheduler struct {
	locker lock.Locker
	opts   Options
	m      metrics

	mu      sync.Mutex
	jobs    []*job
	names   map[string]bool
	running bool
}

type job struct {
	name  string
	sched Schedule
	fn    func(ctx context.Context) error
	opts  JobOptions
}

// New returns a Scheduler that coordinates through locker. It returns
// [lock.ErrNilDatabaseClient] for a nil locker.
func New(locker lock.Locker, opts *Options) (*Scheduler, error) {
	if locker == nil {
		return nil, lock.ErrNilDatabaseClient
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "cron/"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	m, err := newMetrics(o.MeterProvider)
	if err != nil {
		return nil, err
	}
	return &Scheduler{locker: locker, opts: o, m: m, names: make(map[string]bool)}, nil
}

// AddJob adds a job named name that runs fn on the schedule spec (see
// [Parse]). The name identifies the job across replicas: every replica
// must add it with the same name and spec. Add jobs before calling
// [Scheduler.Run]. fn runs under a context that is cancelled if the tick's
// lock is lost (cause wrapping [lock.ErrLockNotHeld]), on Timeout, and
// when Run's context ends; [TickFrom] and [lock.TokenFrom] read the tick's
// scheduled time and fencing token from it.
func (s *Scheduler) AddJob(name, spec string, fn func(ctx context.Context) error, opts *JobOptions) error {
	j, err := s.newJob(name, spec, fn, opts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return fmt.Errorf("cron: AddJob(%q) after Run", name)
	}
	if s.names[name] {
		return fmt.Errorf("cron: job %q added twice", name)
	}
	s.names[name] = true
	s.jobs = append(s.jobs, j)
	return nil
}

func (s *Scheduler) newJob(name, spec string, fn func(ctx context.Context) error, opts *JobOptions) (*job, error) {
	if name == "" {
		return nil, fmt.Errorf("cron: %w: job name", lock.ErrEmptyKey)
	}
	if fn == nil {
		return nil, fmt.Errorf("cron: job %q: %w: nil func", name, lock.ErrNilConfig)
	}
	sched, err := Parse(spec, s.opts.Location)
	if err != nil {
		return nil, fmt.Errorf("cron: job %q: %w", name, err)
	}
	var o JobOptions
	if opts != nil {
		o = *opts
	}
	if o.MinHold < 0 || o.MaxHold < 0 || o.Timeout < 0 {
		return nil, fmt.Errorf("cron: job %q: %w: negative duration in JobOptions", name, lock.ErrInvalidTTL)
	}
	if o.MinHold == 0 {
		o.MinHold = interval(sched, s.opts.Now()) / 2
	}
	if o.MaxHold == 0 {
		o.MaxHold = max(o.MinHold, 10*time.Second)
	}
	// The longest key: prefix + name + "@" + RFC 3339 time.
	if err := lock.ValidateKey(s.opts.KeyPrefix + name + "@2006-01-02T15:04:05.999999999Z"); err != nil {
		return nil, fmt.Errorf("cron: job %q: %w", name, err)
	}
	return &job{name: name, sched: sched, fn: fn, opts: o}, nil
}

// Run runs the jobs until ctx ends, then cancels the contexts of the jobs
// still running, waits for them to return, and returns ctx's error. It may
// be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("cron: Run called twice")
	}
	s.running = true
	jobs := s.jobs
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { s.loop(ctx, j, &wg) })
	}
	wg.Wait()
	return ctx.Err()
}

// loop waits for each tick of j and starts its run; runs may overlap.
func (s *Scheduler) loop(ctx context.Context, j *job, wg *sync.WaitGroup) {
	last := time.Time{}
	for {
		now := s.opts.Now()
		tick := j.sched.Next(now)
		if !tick.After(last) {
			tick = j.sched.Next(last) // never the same tick twice, whatever the clock does
		}
		if tick.IsZero() {
			return // the schedule has no more ticks
		}
		t := time.NewTimer(tick.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		last = tick
		wg.Go(func() { s.runTick(ctx, j, tick) })
	}
}

type tickKey struct{}

// TickFrom returns the scheduled time of the tick a job's context belongs
// to, and false for other contexts.
func TickFrom(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(tickKey{}).(time.Time)
	return t, ok
}

// Outcomes of a tick, as logged and counted.
const (
	outcomeSucceeded = "succeeded" // ran here and returned nil
	outcomeFailed    = "failed"    // ran here and returned an error (or panicked)
	outcomeLost      = "lost"      // ran here, but the lock was lost while it ran
	outcomeSkipped   = "skipped"   // another replica has the tick
	outcomeRunning   = "running"   // SkipIfRunning: the previous run is still going
	outcomeError     = "error"     // the store failed: not run here
)

// runTick makes this replica's attempt at one tick of j.
func (s *Scheduler) runTick(ctx context.Context, j *job, tick time.Time) {
	key := s.opts.KeyPrefix + j.name + "@" + tick.UTC().Format(time.RFC3339Nano)
	log := s.opts.Logger.With(slog.String("job", j.name), slog.Time("tick", tick))
	lk, err := s.locker.Acquire(ctx, key, j.opts.MaxHold)
	switch {
	case errors.Is(err, lock.ErrLockNotAcquired):
		s.m.record(ctx, j.name, outcomeSkipped, 0)
		log.Debug("cron: tick taken by another replica")
		return
	case err != nil:
		if ctx.Err() == nil {
			s.m.record(ctx, j.name, outcomeError, 0)
			log.Error("cron: cannot lock tick", slog.Any("err", err))
		}
		return
	}
	held, stop := lock.Hold(ctx, lk, nil)
	outcome := s.runHeld(held, j, tick, log)

	// Keep the tick locked until tick + MinHold on this replica's clock.
	if wait := tick.Add(j.opts.MinHold).Sub(s.opts.Now()); wait > 0 && outcome != outcomeLost {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-held.Done():
			t.Stop()
			if ctx.Err() != nil {
				// Shutting down: do not release early, or a lagging
				// replica could run this tick again. Let the lock expire
				// when MinHold is over (stores with native TTLs).
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_ = lk.Refresh(rctx, max(tick.Add(j.opts.MinHold).Sub(s.opts.Now()), time.Millisecond))
				cancel()
				return
			}
		}
	}
	if err := stop(); err != nil && !errors.Is(err, lock.ErrLockNotHeld) {
		log.Warn("cron: release failed; the lock will expire", slog.Any("err", err))
	}
}

// runHeld runs j under the held tick lock (and the running lock, with
// SkipIfRunning) and returns the outcome.
func (s *Scheduler) runHeld(held context.Context, j *job, tick time.Time, log *slog.Logger) string {
	jctx := context.WithValue(held, tickKey{}, tick)
	if j.opts.SkipIfRunning {
		rl, err := s.locker.Acquire(held, s.opts.KeyPrefix+j.name, j.opts.MaxHold)
		if errors.Is(err, lock.ErrLockNotAcquired) {
			s.m.record(held, j.name, outcomeRunning, 0)
			log.Info("cron: previous run still going; tick skipped")
			return outcomeRunning
		}
		if err != nil {
			s.m.record(held, j.name, outcomeError, 0)
			log.Error("cron: cannot lock running job", slog.Any("err", err))
			return outcomeError
		}
		var stop func() error
		jctx, stop = lock.Hold(jctx, rl, nil)
		defer stop()
	}
	if j.opts.Timeout > 0 {
		var cancel context.CancelFunc
		jctx, cancel = context.WithTimeout(jctx, j.opts.Timeout)
		defer cancel()
	}
	token, _ := lock.TokenFrom(held)
	start := time.Now()
	err := call(jctx, j.fn)
	d := time.Since(start)
	outcome := outcomeSucceeded
	switch cause := context.Cause(jctx); {
	case errors.Is(cause, lock.ErrLockNotHeld):
		outcome = outcomeLost
		log.Error("cron: lock lost while the job ran", slog.Uint64("token", token), slog.Any("cause", cause))
	case err != nil:
		outcome = outcomeFailed
		log.Error("cron: job failed", slog.Uint64("token", token), slog.Duration("took", d), slog.Any("err", err))
	default:
		log.Info("cron: job ran", slog.Uint64("token", token), slog.Duration("took", d))
	}
	s.m.record(held, j.name, outcome, d)
	return outcome
}

// call runs fn, turning a panic into an error so that one bad job cannot
// take the scheduler down.
func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cron: job panicked: %v", r)
		}
	}()
	return fn(ctx)
}

type metrics struct {
	ticks    metric.Int64Counter
	duration metric.Float64Histogram
}

func newMetrics(mp metric.MeterProvider) (metrics, error) {
	meter := mp.Meter("github.com/dlockgo/dlock/cron")
	ticks, err := meter.Int64Counter("dlock.cron.ticks",
		metric.WithDescription("Ticks of cron jobs seen by this replica, by outcome: succeeded, failed, lost, skipped (another replica ran it), running (previous run still going), error (store failure)."),
		metric.WithUnit("{tick}"))
	if err != nil {
		return metrics{}, err
	}
	duration, err := meter.Float64Histogram("dlock.cron.run.duration",
		metric.WithDescription("Duration of the cron job runs on this replica."),
		metric.WithUnit("s"))
	if err != nil {
		return metrics{}, err
	}
	return metrics{ticks: ticks, duration: duration}, nil
}

func (m metrics) record(ctx context.Context, job, outcome string, d time.Duration) {
	ctx = context.WithoutCancel(ctx)
	attrs := metric.WithAttributes(attribute.String("dlock.cron.job", job), attribute.String("dlock.cron.outcome", outcome))
	m.ticks.Add(ctx, 1, attrs)
	switch outcome {
	case outcomeSucceeded, outcomeFailed, outcomeLost:
		m.duration.Record(ctx, d.Seconds(), attrs)
	}
}
