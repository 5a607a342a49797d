package zklock

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// session is one ZooKeeper client connection and the session it keeps:
// every lock node created through it is ephemeral, owned by the session,
// and deleted by the server when the session ends. The client reconnects by
// itself (to another server of the ensemble, keeping the session) and,
// when the server says the session expired, opens a new one: each session
// is a generation.
type session struct {
	timeout time.Duration
	conn    *zk.Conn

	mu  sync.Mutex
	gen *generation
	cut chan struct{} // closed when the current connection drops
}

// generation is one ZooKeeper session of a client connection.
type generation struct {
	id   int64         // the session ID; 0 until the server granted it
	lost chan struct{} // closed when the session ended (expired or closed)
}

func (g *generation) ended() bool {
	select {
	case <-g.lost:
		return true
	default:
		return false
	}
}

// dial opens a session of timeout d. It does not wait for the connection.
func dial(servers []string, d time.Duration, log *slog.Logger) (*session, error) {
	s := &session{
		timeout: d,
		gen:     &generation{lost: make(chan struct{})},
		cut:     make(chan struct{}),
	}
	// The callback runs on the client's goroutines and may fire before
	// Connect returns: it waits for s.mu, held until conn is set.
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, _, err := zk.Connect(servers, d,
		zk.WithLogger(zkLogger{log}), zk.WithLogInfo(log != nil), zk.WithEventCallback(s.event))
	if err != nil {
		return nil, err
	}
	s.conn = conn
	return s, nil
}

// event follows the session's state. It must not block.
func (s *session) event(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.State {
	case zk.StateHasSession:
		id := s.conn.SessionID()
		if s.gen.id != 0 && s.gen.id != id || s.gen.ended() {
			// A new session without an expiry event: the old one is
			// gone all the same.
			s.next()
		}
		s.gen.id = id
		select {
		case <-s.cut:
			s.cut = make(chan struct{})
		default:
		}
	case zk.StateDisconnected:
		select {
		case <-s.cut:
		default:
			close(s.cut)
		}
	case zk.StateExpired:
		s.next()
	}
}

// next ends the current generation and starts another. The caller holds
// s.mu.
func (s *session) next() {
	if !s.gen.ended() {
		close(s.gen.lost)
	}
	s.gen = &generation{lost: make(chan struct{})}
}

// current returns the session's generation and the channel closed when the
// current connection drops.
func (s *session) current() (*generation, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.cut
}

// genOf returns the generation whose session ID is id, if it is the
// current one.
func (s *session) genOf(id int64) (*generation, <-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.id != id {
		return nil, nil, false
	}
	return s.gen, s.cut, true
}

// close ends the session (the server deletes its ephemeral nodes at once)
// and the connection.
func (s *session) close() {
	s.conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gen.ended() {
		close(s.gen.lost)
	}
}

// grant returns the TTL a lock asking for ttl gets on s, and whether it is
// strict: longer than the session, so that a dropped connection must count
// as a loss (the server may expire the session before the TTL runs out).
func (s *session) grant(ttl time.Duration) (time.Duration, bool) {
	if ttl <= s.timeout {
		return s.timeout, false
	}
	return ttl, true
}

// zkLogger hands the client's messages to a slog.Logger at debug level.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	if z.l != nil {
		z.l.Log(context.Background(), slog.LevelDebug, "zookeeper client: "+fmt.Sprintf(format, args...))
	}
}
