package pglock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
	b     *Backend
	conn  *pgx.Conn
	pid   int32
	stmts map[string]*pgconn.StatementDescription // prepared at dial

	sem chan struct{} // capacity 1: held while conn is in use

	dead     chan struct{} // closed when the session is known dead
	deadOnce sync.Once

	// busySince is when the statement in flight began (UnixNano), 0 when
	// none is; the health check closes a session stuck past OpTimeout.
	busySince atomic.Int64

	// Guarded by sem.
	closed      bool
	watching    bool
	watchCancel context.CancelFunc
	watchDone   chan struct{}
	idle        *time.Timer // starts the watcher; see runLocked
	armed       bool        // idle is pending
	lastUsed    time.Time   // end of the last statement

	idleMu sync.Mutex // guards the assignment of idle against its first firing
}

// dial opens a dedicated session.
func (b *Backend) dial(ctx context.Context) (*session, error) {
	conn, pid, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	return b.newSession(ctx, conn, pid)
}

// connect takes a connection from the pool and hijacks it, so that it no
// longer counts against the pool and is ours to close, and returns it with
// its server backend's PID. It uses the simple protocol only: through a
// transaction pooler prepared statements may not survive, and New must be
// able to say so clearly (see probe).
func (b *Backend) connect(ctx context.Context) (*pgx.Conn, int32, error) {
	c, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("pglock: open session: %w", err)
	}
	conn := c.Hijack()
	var pid int32
	err = conn.QueryRow(ctx,
		`SELECT pg_backend_pid(), set_config('application_name', $1, false), set_config('idle_session_timeout', '0', false)`,
		pgx.QueryExecModeSimpleProtocol, b.appName).Scan(&pid, nil, nil)
	if err != nil {
		closeConn(conn)
		return nil, 0, fmt.Errorf("pglock: open session: %w", err)
	}
	return conn, pid, nil
}

// newSession prepares the store's statements on conn and starts its idle
// timer. It closes conn when it fails.
func (b *Backend) newSession(ctx context.Context, conn *pgx.Conn, pid int32) (*session, error) {
	stmts := make(map[string]*pgconn.StatementDescription, len(b.stmts))
	for name, sql := range b.stmts {
		sd, err := conn.PgConn().Prepare(ctx, name, sql, nil)
		if err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("pglock: open session: prepare %s: %w", name, err)
		}
		stmts[name] = sd
	}
	s := &session{
		b:     b,
		conn:  conn,
		pid:   pid,
		stmts: stmts,
		sem:   make(chan struct{}, 1),
		dead:  make(chan struct{}),
	}
	s.lastUsed, s.armed = time.Now(), true
	// The timer's function may run before AfterFunc returns: it reads idle
	// under idleMu.
	s.idleMu.Lock()
	s.idle = time.AfterFunc(watchDelay, s.startWatch)
	s.idleMu.Unlock()
	return s, nil
}

// closeConn closes a connection that no session owns yet.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx) // closing is all we want
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
// ctx; f itself runs under a context detached from ctx (no cancellation,
// no deadline), because interrupting a statement closes the connection and
// loses every lock on it; the health check bounds it by OpTimeout instead.
// An error that is not a server's answer to the statement marks the session
// dead and closes it.
//
// The hot path sets no timer: a timer armed per statement, or a context
// with a deadline, wakes the runtime's network poller each time and cost
// about a quarter of a loopback round trip in measurements.
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
	s.busySince.Store(time.Now().UnixNano())
	err := f(context.WithoutCancel(ctx), s.conn)
	s.busySince.Store(0)
	s.lastUsed = time.Now()
	if err != nil {
		var pgErr *pgconn.PgError
		if s.conn.IsClosed() || !errors.As(err, &pgErr) || errors.Is(err, ErrSessionMoved) {
			s.markDead()
			s.closeConn()
			return err
		}
	}
	if !s.armed {
		s.armed = true
		s.idle.Reset(watchDelay)
	}
	return err
}

// exec runs a statement prepared at dial and hands its one row, in text
// format, to read (the values are valid only during the call). It bypasses
// pgx's row scanning, whose per-query planning cost a tenth of the client's
// CPU time on these one-row statements, and sends no Describe.
func (s *session) exec(ctx context.Context, stmt string, params [][]byte, formats []int16, read func(row [][]byte) error) error {
	rr := s.conn.PgConn().ExecStatement(ctx, s.stmts[stmt], params, formats, nil)
	n := 0
	var rerr error
	for rr.NextRow() {
		if n == 0 {
			rerr = read(rr.Values())
		}
		n++
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("pglock: %s returned %d rows", stmt, n)
	}
	return rerr
}

// checkPIDText is checkPID for a pid in text format.
func (s *session) checkPIDText(b []byte) error {
	pid, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		return fmt.Errorf("pglock: bad backend pid %q: %w", b, err)
	}
	return s.checkPID(int32(pid))
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
func (s *session) closeConn() { closeConn(s.conn) }

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

// startWatch is the idle timer's function: once the session has been idle
// for watchDelay, it starts the watcher; until then it re-arms itself.
func (s *session) startWatch() {
	s.idleMu.Lock() // orders us after dial's assignment of idle
	idle := s.idle
	s.idleMu.Unlock()
	select {
	case s.sem <- struct{}{}:
	default:
		idle.Reset(watchDelay) // in use: look again later
		return
	}
	defer func() { <-s.sem }()
	if s.closed || s.watching || s.isDead() {
		s.armed = false
		return
	}
	if idle := time.Since(s.lastUsed); idle < watchDelay {
		s.idle.Reset(watchDelay - idle)
		return
	}
	s.armed = false
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

// stuck reports whether the statement in flight has run longer than d.
func (s *session) stuck(now time.Time, d time.Duration) bool {
	since := s.busySince.Load()
	return since != 0 && now.UnixNano()-since > int64(d)
}

// abort closes the network connection under a statement in flight, which
// then fails and marks the session dead. Only the health check calls it,
// without holding sem: closing a net.Conn is safe from any goroutine.
func (s *session) abort() {
	s.markDead()
	_ = s.conn.PgConn().Conn().Close()
}
