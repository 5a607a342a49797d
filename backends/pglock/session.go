package pglock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errSessionDead is returned by session.run for a session already known to
// be dead: nothing was sent.
var errSessionDead = errors.New("pglock: session is dead")

// ErrSessionMoved means a session answered from another server backend than
// the one it was opened on: a pooler in transaction or statement mode sits
// between the store and PostgreSQL, and session advisory locks cannot work
// through it.
var ErrSessionMoved = errors.New("pglock: session moved to another backend (transaction pooling?)")

// session is one dedicated connection on which advisory locks are held.
//
// Whoever holds sem may use conn. While the session is idle a watcher
// goroutine waits on the connection (WaitForNotification) so that a session
// closed by the server — terminated, shut down, timed out — is noticed at
// once; a user of conn stops the watcher first. The watcher starts only after
// the session has been idle for watchDelay, so back-to-back statements never
// pay for it.
type session struct {
	b    *Backend
	conn *pgx.Conn
	pid  int32

	sem chan struct{} // capacity 1: held while conn is in use

	dead     chan struct{} // closed when the session is known dead
	deadOnce sync.Once

	// Guarded by sem.
	closed      bool
	watching    bool
	watchCancel context.CancelFunc
	watchDone   chan struct{}
	idle        *time.Timer
}

// dial opens a dedicated session: a connection taken from the pool and
// hijacked, so it no longer counts against the pool and is ours to close.
func (b *Backend) dial(ctx context.Context) (*session, error) {
	c, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pglock: open session: %w", err)
	}
	conn := c.Hijack()
	var pid int32
	err = conn.QueryRow(ctx,
		`SELECT pg_backend_pid(), set_config('application_name', $1, false), set_config('idle_session_timeout', '0', false)`,
		b.appName).Scan(&pid, nil, nil)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx)
		cancel()
		return nil, fmt.Errorf("pglock: open session: %w", err)
	}
	s := &session{
		b:    b,
		conn: conn,
		pid:  pid,
		sem:  make(chan struct{}, 1),
		dead: make(chan struct{}),
	}
	s.idle = time.AfterFunc(watchDelay, s.startWatch)
	return s, nil
}

func (s *session) isDead() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

func (s *session) markDead() { s.deadOnce.Do(func() { close(s.dead) }) }

// run runs f on the session's connection. Waiting for the session respects
// ctx; f itself runs under a context detached from ctx and bounded by
// OpTimeout, because interrupting a statement closes the connection and
// loses every lock on it. An error that is not a server's answer to the
// statement marks the session dead and closes it.
func (s *session) run(ctx context.Context, f func(ctx context.Context, c *pgx.Conn) error) error {
	select {
	case s.sem <- struct{}{}:
	default:
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-s.sem }()
	return s.runLocked(ctx, f)
}

// tryRun is run that gives up at once, returning false, when the session is
// in use.
func (s *session) tryRun(ctx context.Context, f func(ctx context.Context, c *pgx.Conn) error) (bool, error) {
	select {
	case s.sem <- struct{}{}:
	default:
		return false, nil
	}
	defer func() { <-s.sem }()
	return true, s.runLocked(ctx, f)
}

func (s *session) runLocked(ctx context.Context, f func(ctx context.Context, c *pgx.Conn) error) error {
	if s.closed || s.isDead() {
		return errSessionDead
	}
	s.stopWatch()
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.b.opts.OpTimeout)
	err := f(qctx, s.conn)
	cancel()
	if err != nil {
		var pgErr *pgconn.PgError
		if s.conn.IsClosed() || !errors.As(err, &pgErr) || errors.Is(err, ErrSessionMoved) {
			s.markDead()
			s.closeConn()
			return err
		}
	}
	s.idle.Reset(watchDelay)
	return err
}

// checkPID reports ErrSessionMoved when pid is not the session's backend.
func (s *session) checkPID(pid int32) error {
	if pid != s.pid {
		return fmt.Errorf("%w: opened on backend %d, answered from %d", ErrSessionMoved, s.pid, pid)
	}
	return nil
}

// closeConn closes the connection. The caller holds sem and has stopped
// the watcher.
func (s *session) closeConn() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.conn.Close(ctx) // closing is all we want; an error here changes nothing
}

// close stops the session for good: it waits for the statement in flight,
// stops the watcher and the timer, and closes the connection, which makes
// the server release every lock the session held.
func (s *session) close() {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if s.closed {
		return
	}
	s.closed = true
	s.idle.Stop()
	s.stopWatch()
	s.markDead()
	s.closeConn()
}

// startWatch is the idle timer's function: if the session is still idle,
// it starts the watcher.
func (s *session) startWatch() {
	select {
	case s.sem <- struct{}{}:
	default:
		return // in use; its user resets the timer
	}
	defer func() { <-s.sem }()
	if s.closed || s.watching || s.isDead() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.watching, s.watchCancel, s.watchDone = true, cancel, make(chan struct{})
	s.b.wg.Add(1) // before Backend.Close's Wait: Close takes sem after us
	go s.watch(ctx, s.watchDone)
}

func (s *session) watch(ctx context.Context, done chan struct{}) {
	defer s.b.wg.Done()
	defer close(done)
	for {
		// Returns on a notification (none are expected), on ctx, or when
		// the connection fails: the server closed it.
		err := s.conn.PgConn().WaitForNotification(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.markDead()
			return
		}
	}
}

// stopWatch stops the watcher and waits for it. The caller holds sem.
func (s *session) stopWatch() {
	if !s.watching {
		return
	}
	s.watchCancel()
	<-s.watchDone
	s.watching = false
}
