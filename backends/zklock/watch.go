package zklock

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dlockgo/dlock/lock/driver"
)

// watchRetry is how long a loss watcher waits before it reads the node
// again after ZooKeeper failed to answer.
const watchRetry = 250 * time.Millisecond

// NotifyLoss watches a lock taken through this backend and closes the
// returned channel as soon as it is lost: the session that owns the node
// ended (the client learns of an expiry when it reconnects), the node was
// deleted or overwritten (a watch on it fires), or — for a lock whose TTL
// is longer than its session — the connection dropped. It returns nil for a
// lock this backend did not take. The watcher stops when ctx ends; Close,
// which ends the sessions and so frees their locks, closes the channel.
func (b *backend) NotifyLoss(ctx context.Context, key, owner string) <-chan struct{} {
	e := b.lookup(owner)
	if e == nil || e.key != key {
		return nil
	}
	lost := make(chan struct{})
	if !b.goBackground(func() { b.watchLoss(ctx, key, owner, b.snapshot(e), lost) }) {
		return nil
	}
	return lost
}

func (b *backend) watchLoss(ctx context.Context, key, owner string, e entry, lost chan<- struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.life, cancel)()
	var cut <-chan struct{} // nil, never ready, unless strict
	if e.strict {
		cut = e.cut
	}
	p := b.p.lock(key)
	for {
		type got struct {
			data []byte
			st   *zk.Stat
			ch   <-chan zk.Event
		}
		r, err := call(ctx, b, func() (got, error) {
			d, st, ch, err := e.s.conn.GetW(p)
			return got{d, st, ch}, err
		})
		var retry <-chan time.Time
		var t *time.Timer
		switch {
		case errors.Is(err, zk.ErrNoNode):
			close(lost)
			return
		case err != nil:
			t = time.NewTimer(watchRetry)
			retry = t.C
		case string(r.data) != owner || r.st.Czxid != e.czxid:
			close(lost)
			return
		}
		ended := waitLoss(ctx, e.gen.lost, cut, retry, r.ch)
		if t != nil {
			t.Stop()
		}
		switch ended {
		case gone:
			close(lost)
			return
		case stopped:
			if b.life.Err() != nil {
				close(lost) // Close ended the session: the lock is gone
			}
			return
		}
	}
}

type outcome int

const (
	again   outcome = iota // read the node again
	gone                   // the lock is lost
	stopped                // ctx ended
)

// waitLoss waits for one of the signals a loss watcher follows.
func waitLoss(ctx context.Context, genLost, cut <-chan struct{}, retry <-chan time.Time, ev <-chan zk.Event) outcome {
	select {
	case <-ctx.Done():
		return stopped
	case <-genLost:
		return gone
	case <-cut:
		return gone
	case <-retry:
		return again
	case x := <-ev:
		if x.Type == zk.EventNodeDeleted || x.Type == zk.EventNotWatching && ctx.Err() == nil {
			return gone
		}
		return again // the data changed: read again
	}
}

// WaitFree returns when key looks free: its lock node is absent, or a
// watch on it fired (deleted, or changed). It returns ctx's error when ctx
// ends.
func (b *backend) WaitFree(ctx context.Context, key string) error {
	s, err := b.base()
	if err != nil {
		return err
	}
	p := b.p.lock(key)
	type got struct {
		ok bool
		ch <-chan zk.Event
	}
	r, err := call(ctx, b, func() (got, error) {
		ok, _, ch, err := s.conn.ExistsW(p)
		return got{ok, ch}, err
	})
	if err != nil {
		return storeErr(ctx, "wait", err)
	}
	if !r.ok {
		return nil
	}
	select {
	case <-r.ch:
		return nil
	case <-ctx.Done():
		return storeErr(ctx, "wait", ctx.Err())
	case <-b.life.Done():
		return errClosed
	}
}

// Inspect reads key's lock node: its data is the owner, its creation zxid
// the token. The TTL is zero: a lock lives as long as its holder's session,
// which ZooKeeper does not report to others.
func (b *backend) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	s, err := b.base()
	if err != nil {
		return driver.Holder{}, false, err
	}
	h, ok, err := b.read(ctx, s, b.p.lock(key))
	return h, ok, storeErr(ctx, "inspect", err)
}

func (b *backend) read(ctx context.Context, s *session, p string) (driver.Holder, bool, error) {
	type got struct {
		data []byte
		st   *zk.Stat
	}
	r, err := call(ctx, b, func() (got, error) {
		d, st, err := s.conn.Get(p)
		return got{d, st}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return driver.Holder{}, false, nil
	}
	if err != nil {
		return driver.Holder{}, false, err
	}
	if r.st.EphemeralOwner == 0 {
		return driver.Holder{}, false, nil // not a lock of ours
	}
	h := driver.Holder{Owner: string(r.data), Token: uint64(r.st.Czxid)}
	if b.enforce {
		// Only the backend holding a lock knows its deadline.
		if e := b.lookup(h.Owner); e != nil {
			if cur := b.snapshot(e); cur.exp != nil && cur.czxid == r.st.Czxid {
				ex := cur.exp
				ex.mu.Lock()
				left, expired := time.Until(ex.deadline), ex.expired()
				ex.mu.Unlock()
				if expired {
					return driver.Holder{}, false, nil // being deleted
				}
				h.TTL = left
			}
		}
	}
	return h, true, nil
}

// List implements [driver.Lister]: it lists the locks directory (one round
// trip for all names), then reads each lock node whose key starts with
// prefix. A name that is not an escaped key is skipped.
func (b *backend) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	s, err := b.base()
	if err != nil {
		return err
	}
	names, err := call(ctx, b, func() ([]string, error) {
		names, _, err := s.conn.Children(b.p.locks)
		return names, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil // nothing was ever locked under this root
	}
	if err != nil {
		return storeErr(ctx, "list", err)
	}
	for _, name := range names {
		key, ok := unescape(name)
		if !ok || !strings.HasPrefix(key, prefix) {
			continue
		}
		h, ok, err := b.read(ctx, s, b.p.locks+"/"+name)
		if err != nil {
			return storeErr(ctx, "list", err)
		}
		if ok && !fn(key, h) {
			return nil
		}
	}
	return nil
}
