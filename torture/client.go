package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/retry"
)

// ClientEnv is the environment variable that turns the test binary into a
// client process; its value is the client's name.
const ClientEnv = "DLOCK_TORTURE_CLIENT"

// ClientConfig is what a client process needs, passed in its environment.
type ClientConfig struct {
	Name     string
	URL      string // lock store URL, without identity
	Register string // URL of the store holding the fenced register
	Keys     []string
	Log      string // append-only log file
	TTL      time.Duration
	MaxWork  time.Duration
	Deadline time.Time // no acquire starts after it
	Seed     uint64

	// In-process clients (goroutines) share a Locker and are frozen and
	// killed through their control; neither is passed in the environment.
	locker lock.Locker
	ctl    *control
}

// Env renders c as environment variables.
func (c ClientConfig) Env() []string {
	return []string{
		ClientEnv + "=" + c.Name,
		"DLOCK_TORTURE_URL=" + c.URL,
		"DLOCK_TORTURE_REGISTER=" + c.Register,
		"DLOCK_TORTURE_KEYS=" + strings.Join(c.Keys, ","),
		"DLOCK_TORTURE_LOG=" + c.Log,
		"DLOCK_TORTURE_TTL=" + c.TTL.String(),
		"DLOCK_TORTURE_WORK=" + c.MaxWork.String(),
		"DLOCK_TORTURE_DEADLINE=" + strconv.FormatInt(c.Deadline.UnixNano(), 10),
		"DLOCK_TORTURE_SEED=" + strconv.FormatUint(c.Seed, 10),
	}
}

func configFromEnv() (ClientConfig, error) {
	c := ClientConfig{
		Name:     os.Getenv(ClientEnv),
		URL:      os.Getenv("DLOCK_TORTURE_URL"),
		Register: os.Getenv("DLOCK_TORTURE_REGISTER"),
		Keys:     strings.Split(os.Getenv("DLOCK_TORTURE_KEYS"), ","),
		Log:      os.Getenv("DLOCK_TORTURE_LOG"),
	}
	var err1, err2, err3, err4 error
	c.TTL, err1 = time.ParseDuration(os.Getenv("DLOCK_TORTURE_TTL"))
	c.MaxWork, err2 = time.ParseDuration(os.Getenv("DLOCK_TORTURE_WORK"))
	d, err3 := strconv.ParseInt(os.Getenv("DLOCK_TORTURE_DEADLINE"), 10, 64)
	c.Deadline = time.Unix(0, d)
	c.Seed, err4 = strconv.ParseUint(os.Getenv("DLOCK_TORTURE_SEED"), 10, 64)
	return c, errors.Join(err1, err2, err3, err4)
}

// ClientMain runs a client process from its environment and returns the
// exit code. Call it from TestMain when [ClientEnv] is set.
func ClientMain() int {
	c, err := configFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture client:", err)
		return 2
	}
	if err := RunClient(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "torture client", c.Name+":", err)
		return 1
	}
	return 0
}

// RunClient loops until c.Deadline: acquire a random key with retry, hold
// it, log enter, write through the fenced register, work, write again,
// log lost (when told) and exit, release and log the release. Every failed
// acquire attempt is logged too (try).
func RunClient(ctx context.Context, c ClientConfig) error {
	err := runClient(ctx, c)
	if errors.Is(err, errKilled) {
		return nil
	}
	return err
}

func runClient(ctx context.Context, c ClientConfig) error {
	ctl := c.ctl
	if ctl != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stopKill := context.AfterFunc(ctl.killCtx, cancel)
		defer stopKill()
	}
	f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	emit := func(ev Event) {
		ev.Client = c.Name
		f.WriteString(Format(ev) + "\n") // one write(2) per line
	}
	locker := c.locker
	if locker == nil {
		sep := "?"
		if strings.Contains(c.URL, "?") {
			sep = "&"
		}
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		locker, err = backends.OpenURL(octx, c.URL+sep+"identity="+c.Name)
		ocancel()
		if err != nil {
			return err
		}
		defer locker.Close()
	}
	locker = &tryLocker{Locker: locker, emit: emit, ctl: ctl}
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	reg, err := OpenRegister(octx, c.Register)
	ocancel()
	if err != nil {
		return err
	}
	defer reg.Close()

	rnd := rand.New(rand.NewPCG(c.Seed, uint64(os.Getpid())))
	ropts := &retry.Options{InitialInterval: 2 * time.Millisecond, MaxInterval: 50 * time.Millisecond,
		MaxElapsedTime: 3 * c.TTL, RetryStoreErrors: true}

	write := func(held context.Context, key string, token uint64) error {
		if err := ctl.checkpoint(); err != nil {
			return err
		}
		writeFenced(held, reg, key, token, emit)
		return nil
	}

	for time.Now().Before(c.Deadline) {
		key := c.Keys[rnd.IntN(len(c.Keys))]
		actx, cancel := context.WithTimeout(ctx, 5*c.TTL)
		t0 := now()
		lk, err := retry.Acquire(actx, locker, key, c.TTL, ropts)
		cancel()
		if err := ctl.checkpoint(); err != nil {
			return err
		}
		if err != nil {
			if !errors.Is(err, lock.ErrLockNotAcquired) && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintln(os.Stderr, "torture client", c.Name, "acquire:", err)
				time.Sleep(10 * time.Millisecond) // a store failure: do not spin
			}
			continue
		}
		if err := runSection(ctx, c, emit, write, rnd, lk, key, t0); err != nil {
			return err
		}
	}
	return nil
}

func now() int64 { return time.Now().UnixNano() }

// runSection runs one critical section of a client on lk.
func runSection(ctx context.Context, c ClientConfig, emit func(Event), write func(context.Context, string, uint64) error,
	rnd *rand.Rand, lk lock.Lock, key string, t0 int64) error {
	held, stop := lock.Hold(ctx, lk, nil)
	var lostAt atomic.Int64
	stopAfter := context.AfterFunc(held, func() { lostAt.Store(now()) })
	defer stopAfter()
	token := lk.Token()
	emit(Event{Op: "enter", Key: key, Token: token, T0: t0, T: now()})
	if err := write(held, key, token); err != nil {
		return err // killed: no release, no more lines
	}
	t := time.NewTimer(time.Duration(rnd.Int64N(int64(c.MaxWork) + 1)))
	defer t.Stop()
work:
	for {
		select {
		case <-held.Done():
			break work
		case <-t.C:
			break work
		case <-c.ctl.signal():
			if err := c.ctl.checkpoint(); err != nil {
				return err
			}
		}
	}
	if err := write(held, key, token); err != nil {
		return err
	}
	if held.Err() != nil && !killed(c.ctl) { // stop has not been called: this is a loss
		for lostAt.Load() == 0 { // AfterFunc's goroutine is starting
			time.Sleep(50 * time.Microsecond)
		}
		emit(Event{Op: "lost", Key: key, Token: token, T: lostAt.Load()})
	}
	emit(Event{Op: "exit", Key: key, Token: token, T: now()})
	r0 := now()
	err := stop()
	res := "ok"
	switch {
	case errors.Is(err, lock.ErrLockNotHeld):
		res = "notheld"
	case err != nil:
		res = "error"
	}
	emit(Event{Op: "rel", Key: key, Token: token, T0: r0, T: now(), Result: res})
	return nil
}

// tryLocker logs every failed acquire attempt of a client, and passes its
// locks through the client's control (in-process clients).
type tryLocker struct {
	lock.Locker
	emit func(Event)
	ctl  *control
}

func (l *tryLocker) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lock, error) {
	if err := l.ctl.checkpoint(); err != nil {
		return nil, err
	}
	t0 := now()
	lk, err := l.Locker.Acquire(ctx, key, ttl)
	if err != nil {
		res := "error"
		if errors.Is(err, lock.ErrLockNotAcquired) {
			res = "busy"
		}
		if !killed(l.ctl) {
			l.emit(Event{Op: "try", Key: key, T0: t0, T: now(), Result: res})
		}
		return nil, err
	}
	if l.ctl != nil {
		return &ctlLock{Lock: lk, ctl: l.ctl}, nil
	}
	return lk, nil
}

// errKilled ends an in-process client that its control killed.
var errKilled = errors.New("torture: client killed")

// control freezes and kills an in-process client (a goroutine), which
// cannot be sent signals: the client blocks at its checkpoints while
// frozen, and its locks stop being refreshed; a killed client returns at
// its next checkpoint without releasing anything.
type control struct {
	killCtx context.Context
	kill    context.CancelFunc
	parked  atomic.Bool // the client's own goroutine is blocked at a checkpoint

	mu   sync.Mutex
	gate chan struct{} // non-nil while frozen; closed by thaw
	sig  chan struct{} // closed when a freeze is asked for
}

func newControl() *control {
	ctx, cancel := context.WithCancel(context.Background())
	return &control{killCtx: ctx, kill: cancel, sig: make(chan struct{})}
}

func (c *control) freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = make(chan struct{})
	close(c.sig)
}

func (c *control) thaw() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.gate)
	c.gate = nil
	c.sig = make(chan struct{})
}

// signal is closed when the client should come to a checkpoint (nil for
// a process client: never).
func (c *control) signal() <-chan struct{} {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sig
}

// wait blocks while the client is frozen; parked is set meanwhile when
// the client's own goroutine waits.
func (c *control) wait(parked bool) {
	c.mu.Lock()
	g := c.gate
	c.mu.Unlock()
	if g != nil {
		if parked {
			c.parked.Store(true)
			defer c.parked.Store(false)
		}
		select {
		case <-g:
		case <-c.killCtx.Done():
		}
	}
}

// checkpoint is where the client's goroutine stops while frozen; it
// returns errKilled once the client was killed.
func (c *control) checkpoint() error {
	if c == nil {
		return nil
	}
	c.wait(true)
	if c.killCtx.Err() != nil {
		return errKilled
	}
	return nil
}

func killed(c *control) bool { return c != nil && c.killCtx.Err() != nil }

// ctlLock is a lock of an in-process client: while the client is frozen
// its refreshes block, as a frozen process's would, whatever their
// context says.
type ctlLock struct {
	lock.Lock
	ctl *control
}

func (l *ctlLock) Refresh(ctx context.Context, ttl time.Duration) error {
	l.ctl.wait(false)
	if killed(l.ctl) {
		return errKilled
	}
	return l.Lock.Refresh(ctx, ttl)
}

// Expiry passes on the lock's [lock.Expirer], which lock.Hold uses.
func (l *ctlLock) Expiry() time.Time {
	if e, ok := l.Lock.(lock.Expirer); ok {
		return e.Expiry()
	}
	return time.Now().Add(l.TTL())
}

// writeFenced offers token for key to the register and emits the outcome.
// It writes nothing once held has ended; a write it starts runs to its end
// (2 s bound) even if held ends meanwhile, which is what tests the fence.
func writeFenced(held context.Context, reg Register, key string, token uint64, emit func(Event)) {
	if held.Err() != nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(held), 2*time.Second)
	defer cancel()
	t0 := now()
	ok, err := reg.Write(wctx, key, token)
	res := "ok"
	switch {
	case err != nil:
		res = "error"
	case !ok:
		res = "rejected"
	}
	emit(Event{Op: "write", Key: key, Token: token, T0: t0, T: now(), Result: res})
}
