package torture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
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
// log lost (when told) and exit, release.
func RunClient(ctx context.Context, c ClientConfig) error {
	f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	emit := func(ev Event) {
		ev.Client = c.Name
		f.WriteString(Format(ev) + "\n") // one write(2) per line
	}
	sep := "?"
	if strings.Contains(c.URL, "?") {
		sep = "&"
	}
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	locker, err := backends.OpenURL(octx, c.URL+sep+"identity="+c.Name)
	ocancel()
	if err != nil {
		return err
	}
	defer locker.Close()
	octx, ocancel = context.WithTimeout(ctx, 10*time.Second)
	reg, err := OpenRegister(octx, c.Register)
	ocancel()
	if err != nil {
		return err
	}
	defer reg.Close()

	rnd := rand.New(rand.NewPCG(c.Seed, uint64(os.Getpid())))
	ropts := &retry.Options{InitialInterval: 2 * time.Millisecond, MaxInterval: 50 * time.Millisecond,
		MaxElapsedTime: 3 * c.TTL, RetryStoreErrors: true}
	now := func() int64 { return time.Now().UnixNano() }

	write := func(held context.Context, key string, token uint64) {
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

	for time.Now().Before(c.Deadline) {
		key := c.Keys[rnd.IntN(len(c.Keys))]
		actx, cancel := context.WithTimeout(ctx, 5*c.TTL)
		t0 := now()
		lk, err := retry.Acquire(actx, locker, key, c.TTL, ropts)
		cancel()
		if err != nil {
			if !errors.Is(err, lock.ErrLockNotAcquired) && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintln(os.Stderr, "torture client", c.Name, "acquire:", err)
				time.Sleep(10 * time.Millisecond) // a store failure: do not spin
			}
			continue
		}
		held, stop := lock.Hold(ctx, lk, nil)
		var lostAt atomic.Int64
		stopAfter := context.AfterFunc(held, func() { lostAt.Store(now()) })
		token := lk.Token()
		emit(Event{Op: "enter", Key: key, Token: token, T0: t0, T: now()})
		write(held, key, token)
		t := time.NewTimer(time.Duration(rnd.Int64N(int64(c.MaxWork) + 1)))
		select {
		case <-held.Done():
		case <-t.C:
		}
		t.Stop()
		write(held, key, token)
		if held.Err() != nil { // stop has not been called: this is a loss
			for lostAt.Load() == 0 { // AfterFunc's goroutine is starting
				time.Sleep(50 * time.Microsecond)
			}
			emit(Event{Op: "lost", Key: key, Token: token, T: lostAt.Load()})
		}
		emit(Event{Op: "exit", Key: key, Token: token, T: now()})
		stopAfter()
		_ = stop() // ErrLockNotHeld after a loss is expected
	}
	return nil
}
