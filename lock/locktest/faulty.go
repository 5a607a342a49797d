package locktest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dlockgo/dlock/lock/driver"
)

// ErrInjected is the error a [Faulty] backend returns for a call it failed
// on purpose, unless another error was given.
var ErrInjected = errors.New("locktest: injected fault")

// ErrLostReply is returned by a [Faulty] backend for a call that reached the
// store, was applied, and whose reply was then thrown away: the caller
// cannot know the outcome.
var ErrLostReply = errors.New("locktest: reply lost after the store applied the call")

// Faulty wraps a Backend and injects faults for tests of the layers above
// it: failed calls, lost replies, added latency, and a cut connection. It
// forwards [driver.LossNotifier], [driver.Inspector] and [driver.Waiter] to
// the wrapped Backend when it has them. It is safe for concurrent use.
type Faulty struct {
	b driver.Backend

	mu       sync.Mutex
	failNext int
	failErr  error
	lostNext int
	latency  time.Duration
	cut      chan struct{} // closed by Cut; replaced by Heal
	isCut    bool
	stall    chan struct{} // non-nil while stalled; closed by Unstall
	calls    int
}

var (
	_ driver.Backend      = (*Faulty)(nil)
	_ driver.LossNotifier = (*Faulty)(nil)
	_ driver.Inspector    = (*Faulty)(nil)
	_ driver.Waiter       = (*Faulty)(nil)
)

// NewFaulty returns a Faulty that passes every call to b until told
// otherwise.
func NewFaulty(b driver.Backend) *Faulty {
	return &Faulty{b: b, cut: make(chan struct{})}
}

// FailNext makes the next n calls (other than Close) fail with err, or with
// [ErrInjected] when err is nil, without reaching the store.
func (f *Faulty) FailNext(n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext, f.failErr = n, err
}

// LoseNextReplies makes the next n calls reach the store and then return
// [ErrLostReply] instead of the store's answer.
func (f *Faulty) LoseNextReplies(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lostNext = n
}

// SetLatency delays every call by d before it reaches the store (a call
// whose ctx ends first returns ctx's error).
func (f *Faulty) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// Stall makes every call block, whatever its context says, until
// [Faulty.Unstall]: a store client that does not honour contexts, like a
// statement waiting on a connection that went silent. Layers must not wait
// for such a call past their own deadlines.
func (f *Faulty) Stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall == nil {
		f.stall = make(chan struct{})
	}
}

// Unstall lets the calls blocked by [Faulty.Stall] go on to the store.
func (f *Faulty) Unstall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall != nil {
		close(f.stall)
		f.stall = nil
	}
}

// Cut makes every call fail with [ErrInjected] until [Faulty.Heal], and
// reports every lock watched through NotifyLoss as lost, as a dropped
// connection to a session-based store would.
func (f *Faulty) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.isCut {
		f.isCut = true
		close(f.cut)
	}
}

// Heal ends a [Faulty.Cut].
func (f *Faulty) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isCut {
		f.isCut = false
		f.cut = make(chan struct{})
	}
}

// Calls returns the number of calls made so far, failed ones included.
func (f *Faulty) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// before decides the fate of one call: an error to return at once, or
// whether to lose the reply after the call.
func (f *Faulty) before(ctx context.Context) (lose bool, err error) {
	f.mu.Lock()
	f.calls++
	lat, stall := f.latency, f.stall
	switch {
	case f.isCut:
		err = ErrInjected
	case f.failNext > 0:
		f.failNext--
		err = f.failErr
	case f.lostNext > 0:
		f.lostNext--
		lose = true
	}
	f.mu.Unlock()
	if err != nil {
		return false, err
	}
	if stall != nil {
		<-stall
	}
	if lat > 0 {
		t := time.NewTimer(lat)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return lose, nil
}

// TryAcquire implements [driver.Backend].
func (f *Faulty) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	lose, err := f.before(ctx)
	if err != nil {
		return driver.Grant{}, false, err
	}
	g, ok, err := f.b.TryAcquire(ctx, key, owner, ttl)
	if lose && err == nil {
		return driver.Grant{}, false, ErrLostReply
	}
	return g, ok, err
}

// Refresh implements [driver.Backend].
func (f *Faulty) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	lose, err := f.before(ctx)
	if err != nil {
		return 0, false, err
	}
	d, ok, err := f.b.Refresh(ctx, key, owner, ttl)
	if lose && err == nil {
		return 0, false, ErrLostReply
	}
	return d, ok, err
}

// Release implements [driver.Backend].
func (f *Faulty) Release(ctx context.Context, key, owner string) (bool, error) {
	lose, err := f.before(ctx)
	if err != nil {
		return false, err
	}
	ok, err := f.b.Release(ctx, key, owner)
	if lose && err == nil {
		return false, ErrLostReply
	}
	return ok, err
}

// Ping implements [driver.Backend].
func (f *Faulty) Ping(ctx context.Context) error {
	if _, err := f.before(ctx); err != nil {
		return err
	}
	return f.b.Ping(ctx)
}

// Close implements [driver.Backend]; it closes the wrapped Backend.
func (f *Faulty) Close() error { return f.b.Close() }

// NotifyLoss implements [driver.LossNotifier]: the channel is closed when
// the wrapped store reports the loss or when the connection is [Faulty.Cut].
func (f *Faulty) NotifyLoss(ctx context.Context, key, owner string) <-chan struct{} {
	var inner <-chan struct{}
	if n, ok := f.b.(driver.LossNotifier); ok {
		inner = n.NotifyLoss(ctx, key, owner)
	}
	f.mu.Lock()
	cut := f.cut
	f.mu.Unlock()
	out := make(chan struct{})
	go func() {
		select {
		case <-inner:
			close(out)
		case <-cut:
			close(out)
		case <-ctx.Done():
		}
	}()
	return out
}

// Inspect implements [driver.Inspector]. It returns
// [errors.ErrUnsupported] when the wrapped store cannot inspect.
func (f *Faulty) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if _, err := f.before(ctx); err != nil {
		return driver.Holder{}, false, err
	}
	in, ok := f.b.(driver.Inspector)
	if !ok {
		return driver.Holder{}, false, errors.ErrUnsupported
	}
	return in.Inspect(ctx, key)
}

// WaitFree implements [driver.Waiter]. When the wrapped store cannot wait,
// it returns at once, which tells the caller to try again.
func (f *Faulty) WaitFree(ctx context.Context, key string) error {
	if _, err := f.before(ctx); err != nil {
		return err
	}
	if w, ok := f.b.(driver.Waiter); ok {
		return w.WaitFree(ctx, key)
	}
	return nil
}
