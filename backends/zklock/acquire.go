package zklock

import (
	"context"
	"errors"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dlockgo/dlock/lock/driver"
)

// acl is the access list of every node dlock creates: open, as ZooKeeper's
// default. Restrict access with the ensemble's own means (a chroot, ACLs on
// the root's parent).
var acl = zk.WorldACL(zk.PermAll)

// TryAcquire creates, in one transaction (one round trip) on the session
// for ttl: the lock node (ephemeral, data owner), the owner marker
// (ephemeral), and a write of the lock node's data whose answer carries the
// node's Stat, hence its creation zxid, the fencing token. A lock node that
// exists already makes the transaction fail with "node exists": the key is
// held. Missing parents are created, then the transaction is tried again.
func (b *backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	s, err := b.session(b.timeoutFor(ttl))
	if err != nil {
		return driver.Grant{}, false, err
	}
	start := time.Now()
	granted, strict := b.grant(s, ttl)
	gen, cut := s.current()
	e := &entry{key: key, s: s, gen: gen, cut: cut, granted: granted, strict: strict}
	// Remembered before the request: if its outcome is unknown, the
	// clean-up release goes through the same session, after it.
	b.remember(owner, e)
	lp, mp := b.p.lock(key), b.p.marker(key, owner)
	data := []byte(owner)
	create := func() ([]zk.MultiResponse, error) {
		// A clean-up release after a cancelled attempt waits for this
		// request's answer: sent before the create, it would find
		// nothing and leave the node behind.
		settled := make(chan struct{})
		b.mu.Lock()
		e.settled = settled
		b.mu.Unlock()
		resp, started, err := callStarted(ctx, b, func() ([]zk.MultiResponse, error) {
			defer close(settled)
			return s.conn.Multi(
				&zk.CreateRequest{Path: lp, Data: data, Acl: acl, Flags: zk.FlagEphemeral},
				&zk.CreateRequest{Path: mp, Acl: acl, Flags: zk.FlagEphemeral},
				&zk.SetDataRequest{Path: lp, Data: data, Version: 0},
			)
		})
		if !started {
			close(settled) // nothing was sent
		}
		return resp, err
	}
	resp, err := create()
	if errors.Is(err, zk.ErrNoNode) {
		if err = b.makeParents(ctx, s); err == nil {
			resp, err = create()
		}
	}
	switch {
	case errors.Is(err, zk.ErrNodeExists):
		b.forget(owner, e)
		return driver.Grant{}, false, nil
	case err != nil:
		return driver.Grant{}, false, storeErr(ctx, "acquire", err)
	case len(resp) != 3 || resp[2].Stat == nil:
		return driver.Grant{}, false, storeErr(ctx, "acquire", errors.New("unexpected answer to the transaction"))
	}
	st := resp[2].Stat
	if st.EphemeralOwner != gen.id {
		// The session was not established yet when the attempt began
		// (or was replaced since): find the generation the node
		// belongs to. If it is no longer the current one, the node is
		// already gone and the lock counts as lost from the start.
		if g, c, ok := s.genOf(st.EphemeralOwner); ok {
			gen, cut = g, c
		} else {
			gen = &generation{id: st.EphemeralOwner, lost: closedChan()}
		}
	}
	b.mu.Lock()
	e.czxid, e.gen, e.cut = st.Czxid, gen, cut
	b.mu.Unlock()
	if b.enforce {
		b.arm(key, owner, e, start.Add(granted))
	}
	return driver.Grant{Token: uint64(st.Czxid), TTL: granted}, true, nil
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// makeParents creates the root, its ancestors, and the three directories
// under it; nodes that exist already are fine.
func (b *backend) makeParents(ctx context.Context, s *session) error {
	var todo []string
	for i := 1; i < len(b.p.root); i++ {
		if b.p.root[i] == '/' {
			todo = append(todo, b.p.root[:i])
		}
	}
	todo = append(todo, b.p.root, b.p.locks, b.p.owners, b.p.records)
	for _, p := range todo {
		_, err := call(ctx, b, func() (string, error) { return s.conn.Create(p, nil, 0, acl) })
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}

// Refresh reads the lock node (one round trip) and confirms that it still
// holds owner with the token it was created with. That the ephemeral node
// exists proves its session alive: the server deletes it when the session
// ends. Nothing is extended on the server: the session's heartbeats keep
// the lock alive. When the TTL is enforced the local deadline moves to ttl from the
// start of the read.
func (b *backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	e, s, err := b.connFor(key, owner)
	if err != nil {
		return 0, false, err
	}
	var ex *expiry
	if e != nil {
		ex = b.snapshot(e).exp
	}
	if ex != nil {
		ex.mu.Lock()
		defer ex.mu.Unlock()
		if ex.expired() {
			return 0, false, nil // the timer deletes it
		}
	}
	start := time.Now()
	type got struct {
		data []byte
		st   *zk.Stat
	}
	var cut <-chan struct{}
	if e != nil {
		_, cut = s.current() // the connection this read confirms
	}
	r, err := call(ctx, b, func() (got, error) {
		d, st, err := s.conn.Get(b.p.lock(key))
		return got{d, st}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		if e != nil {
			b.forget(owner, e)
		}
		return 0, false, nil
	}
	if err != nil {
		return 0, false, storeErr(ctx, "refresh", err)
	}
	if string(r.data) != owner || r.st.EphemeralOwner == 0 {
		if e != nil {
			b.forget(owner, e)
		}
		return 0, false, nil
	}
	if e == nil {
		// Taken by another backend: its session's length is unknown
		// here, so the TTL is what was asked.
		return ttl, true, nil
	}
	if cur := b.snapshot(e); r.st.Czxid != cur.czxid || r.st.EphemeralOwner != cur.gen.id || cur.gen.ended() {
		b.forget(owner, e)
		return 0, false, nil
	}
	granted, strict := b.grant(s, ttl)
	b.mu.Lock()
	e.granted, e.strict, e.cut = granted, strict, cut
	b.mu.Unlock()
	if ex != nil {
		ex.deadline = start.Add(granted)
		ex.timer.Reset(time.Until(ex.deadline))
	}
	return granted, true, nil
}

// Release deletes the owner marker and the lock node in one transaction
// (one round trip). The marker exists only while owner holds the key, so
// the transaction fails, deleting nothing, when the lock is no longer
// owner's — ZooKeeper cannot compare a node's data in a transaction, but
// it can require that a node exists.
func (b *backend) Release(ctx context.Context, key, owner string) (_ bool, err error) {
	e, s, err := b.connFor(key, owner)
	if err != nil {
		return false, err
	}
	if e != nil {
		if err := b.settle(ctx, e); err != nil {
			return false, storeErr(ctx, "release", err)
		}
		if ex := b.snapshot(e).exp; ex != nil {
			ex.mu.Lock()
			wasDone := ex.done // expired (and being deleted) or being released
			late := !wasDone && ex.expired()
			ex.done = true
			ex.timer.Stop()
			ex.mu.Unlock()
			switch {
			case wasDone:
				return false, nil
			case late:
				// Past its TTL, before the timer's callback ran: not
				// held any more; delete it as the timer would have.
				b.goBackground(func() { b.deleteExpired(key, owner, e) })
				return false, nil
			}
			defer func() {
				if err != nil {
					// Still ours as far as we know: the deadline
					// applies again.
					ex.mu.Lock()
					ex.done = false
					ex.timer.Reset(time.Until(ex.deadline))
					ex.mu.Unlock()
				}
			}()
		}
	}
	ok, err := b.deleteLock(ctx, s, key, owner)
	if err != nil {
		return false, storeErr(ctx, "release", err)
	}
	if e != nil {
		b.forget(owner, e)
	}
	return ok, nil
}

// deleteLock deletes owner's marker and key's lock node in one
// transaction; ok is false when the marker was gone (not owner's lock).
func (b *backend) deleteLock(ctx context.Context, s *session, key, owner string) (bool, error) {
	_, err := call(ctx, b, func() ([]zk.MultiResponse, error) {
		return s.conn.Multi(
			&zk.DeleteRequest{Path: b.p.marker(key, owner), Version: -1},
			&zk.DeleteRequest{Path: b.p.lock(key), Version: -1},
		)
	})
	if errors.Is(err, zk.ErrNoNode) {
		return false, nil
	}
	return err == nil, err
}

// settle waits until the acquisition that made e has its answer (at once
// unless a cancelled attempt's request is still in flight).
func (b *backend) settle(ctx context.Context, e *entry) error {
	if c := b.snapshot(e).settled; c != nil {
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
