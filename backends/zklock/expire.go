package zklock

import (
	"context"
	"sync"
	"time"
)

// expiry is the local deadline of a lock when the TTL is enforced (not Options.AdvisoryTTL): a timer
// (no goroutine while it waits) deletes the lock when its holder did not
// refresh it within its TTL.
type expiry struct {
	mu       sync.Mutex // serialises the deadline's checks with Refresh and Release
	deadline time.Time
	timer    *time.Timer
	done     bool // expired or released: the lock is no longer held
}

// expired reports, under ex.mu, whether the lock is no longer held.
func (ex *expiry) expired() bool { return ex.done || !time.Now().Before(ex.deadline) }

// arm starts e's expiry at deadline.
func (b *backend) arm(key, owner string, e *entry, deadline time.Time) {
	ex := &expiry{deadline: deadline}
	ex.mu.Lock() // the callback must see the timer
	ex.timer = time.AfterFunc(time.Until(deadline), func() { b.expire(key, owner, e, ex) })
	ex.mu.Unlock()
	b.mu.Lock()
	e.exp = ex
	b.mu.Unlock()
}

// expire runs when ex's timer fires: unless a refresh moved the deadline,
// the lock is no longer held and its node is deleted.
func (b *backend) expire(key, owner string, e *entry, ex *expiry) {
	ex.mu.Lock()
	if ex.done {
		ex.mu.Unlock()
		return
	}
	if d := time.Until(ex.deadline); d > 0 {
		ex.timer.Reset(d)
		ex.mu.Unlock()
		return
	}
	ex.done = true
	ex.mu.Unlock()
	b.goBackground(func() { b.deleteExpired(key, owner, e) })
}

// deleteExpired deletes an expired lock, trying again while ZooKeeper does
// not answer, until the session that owns the node has ended (which deletes
// it too) or the backend is closed.
func (b *backend) deleteExpired(key, owner string, e *entry) {
	cur := b.snapshot(e)
	defer b.forget(owner, e)
	for {
		ctx, cancel := context.WithTimeout(b.life, b.cleanup)
		_, err := b.deleteLock(ctx, cur.s, key, owner)
		cancel()
		if err == nil || cur.gen.ended() || b.life.Err() != nil {
			return
		}
		t := time.NewTimer(watchRetry)
		select {
		case <-t.C:
		case <-b.life.Done():
			t.Stop()
			return
		}
	}
}

// stopTimers stops the expiry timers of the locks held here (Close: the
// sessions' end frees the locks).
func (b *backend) stopTimers() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.held {
		if e.exp != nil {
			e.exp.timer.Stop()
		}
	}
}
