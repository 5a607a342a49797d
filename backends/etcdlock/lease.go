package etcdlock

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/lock/driver"
)

// TryAcquire attaches key to a lease of its own for ttl in one
// transaction, "if CreateRevision(key) == 0 then Put(key, owner, lease)".
// The lease is either an idle spare of this backend, renewed by a
// keepalive sent just before the transaction (both in flight together: one
// round trip), or a new one granted first (two round trips). The fencing
// token is the revision of the transaction, which is the key's create
// revision. A refused attempt keeps its lease as a spare.
//
// A key this backend found held within the last second is read first (a
// linearizable read: no write through Raft); while it is still held the
// attempt ends there, so that polling a held key costs one read.
func (b *backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	k := b.prefix + key
	want := b.leaseSeconds(ttl)
	start := time.Now()
	if b.wasContended(k, start) {
		resp, err := b.c.Get(ctx, k, clientv3.WithCountOnly())
		if err != nil {
			return driver.Grant{}, false, storeErr(ctx, "acquire", err)
		}
		if resp.Count > 0 {
			b.markContended(k, time.Now())
			return driver.Grant{}, false, nil
		}
		b.notContended(k)
	}
	if sp, ok := b.takeSpare(want, start); ok {
		g, ok, err, retry := b.acquireOnSpare(ctx, k, owner, sp, start)
		if !retry {
			return g, ok, err
		}
		// The spare had expired, so nothing was written: start over
		// on a new lease.
		start = time.Now()
	}
	id, granted, err := b.grant(ctx, want)
	if err != nil {
		return driver.Grant{}, false, err
	}
	resp, err := b.putIfAbsent(ctx, k, owner, id)
	if err != nil {
		// The put may have been applied. Revoking the lease deletes the
		// key only if it is attached to it, that is, only if it is ours.
		b.revokeLater(id)
		return driver.Grant{}, false, storeErr(ctx, "acquire", err)
	}
	deadline := start.Add(seconds(granted))
	if !resp.Succeeded {
		b.markContended(k, time.Now())
		b.putSpare(id, granted, deadline)
		return driver.Grant{}, false, nil
	}
	b.remember(owner, &held{key: k, lease: id, ttl: granted, deadline: deadline})
	return driver.Grant{Token: uint64(resp.Header.Revision), TTL: seconds(granted)}, true, nil
}

func (b *backend) putIfAbsent(ctx context.Context, k, owner string, id clientv3.LeaseID) (*clientv3.TxnResponse, error) {
	return b.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, owner, clientv3.WithLease(id))).
		Commit()
}

// acquireOnSpare is TryAcquire on spare lease sp, renewed by a keepalive
// in flight with the transaction. The order in which etcd applies the two
// does not matter: the spare lives at least spareMargin longer either way.
// retry reports that the spare was gone and nothing was written.
func (b *backend) acquireOnSpare(ctx context.Context, k, owner string, sp spare, start time.Time) (g driver.Grant, ok bool, err error, retry bool) {
	ka, err := b.sendKeepAlive(ctx, sp.id)
	if err != nil {
		b.putSpare(sp.id, sp.ttl, sp.deadline)
		return driver.Grant{}, false, err, false
	}
	resp, terr := b.putIfAbsent(ctx, k, owner, sp.id)
	got, kerr := ka.wait()
	switch {
	case errors.Is(terr, rpctypes.ErrLeaseNotFound):
		return driver.Grant{}, false, nil, true
	case terr != nil:
		b.revokeLater(sp.id) // deletes the key if the put was applied
		return driver.Grant{}, false, storeErr(ctx, "acquire", terr), false
	case !resp.Succeeded && (kerr != nil || got == 0):
		// Refused; the lease's state is unknown or it is gone.
		b.markContended(k, time.Now())
		if kerr != nil {
			b.revokeLater(sp.id)
		}
		return driver.Grant{}, false, nil, false
	case kerr != nil:
		// The outcome of the transaction is known, the lease's is not:
		// give the lease up, and the key with it if we took it.
		b.revokeLater(sp.id)
		return driver.Grant{}, false, kerr, false
	case got == 0:
		// The lease expired just after the put, and etcd deleted the
		// key with it (a keepalive reports a lease gone only once its
		// revocation is applied).
		return driver.Grant{}, false, nil, true
	}
	deadline := start.Add(seconds(got))
	if !resp.Succeeded {
		b.markContended(k, time.Now())
		b.putSpare(sp.id, got, deadline)
		return driver.Grant{}, false, nil, false
	}
	b.remember(owner, &held{key: k, lease: sp.id, ttl: got, deadline: deadline})
	return driver.Grant{Token: uint64(resp.Header.Revision), TTL: seconds(got)}, true, nil, false
}

// Refresh renews the lock's lease with a keepalive, and reads the key in
// the same round trip to confirm that it still holds owner on that lease.
// A TTL that needs a lease of another length moves the key to a new lease
// instead (see moveLease).
func (b *backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	k := b.prefix + key
	want := b.leaseSeconds(ttl)
	h := b.lookup(owner)
	if h == nil || h.key != k {
		return b.refreshUncached(ctx, k, owner, want)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return 0, false, nil
	}
	start := time.Now()
	if want != h.ttl {
		id, got, ok, err := b.moveLease(ctx, k, owner, h.lease, h.ttl, h.deadline, want)
		if err != nil || !ok {
			b.forget(owner, h)
			return 0, false, err
		}
		h.lease, h.ttl, h.deadline = id, got, start.Add(seconds(got))
		return seconds(got), true, nil
	}
	got, ok, err := b.renew(ctx, k, owner, h.lease)
	if err != nil {
		return 0, false, err
	}
	if !ok {
		b.forget(owner, h)
		return 0, false, nil
	}
	h.ttl, h.deadline = got, start.Add(seconds(got))
	return seconds(got), true, nil
}

// renew sends a keepalive of lease and, while it is in flight, reads k.
// ok is false when the lease is gone or k is not owner's on that lease; a
// live lease that no longer carries the key is revoked.
func (b *backend) renew(ctx context.Context, k, owner string, lease clientv3.LeaseID) (int64, bool, error) {
	ka, err := b.sendKeepAlive(ctx, lease)
	if err != nil {
		return 0, false, err
	}
	resp, gerr := b.c.Get(ctx, k)
	got, kerr := ka.wait()
	if gerr != nil {
		return 0, false, storeErr(ctx, "refresh", gerr)
	}
	if kerr != nil {
		return 0, false, kerr
	}
	if got == 0 {
		return 0, false, nil
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != owner || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
		// Someone other than dlock deleted or overwrote the key.
		b.revokeLater(lease)
		return 0, false, nil
	}
	return got, true, nil
}

// refreshUncached refreshes a lock whose lease this backend does not know:
// it reads the key to find it.
func (b *backend) refreshUncached(ctx context.Context, k, owner string, want int64) (time.Duration, bool, error) {
	start := time.Now()
	resp, err := b.c.Get(ctx, k)
	if err != nil {
		return 0, false, storeErr(ctx, "refresh", err)
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != owner || resp.Kvs[0].Lease == 0 {
		return 0, false, nil
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	got, ok, err := b.renew(ctx, k, owner, lease)
	if err != nil || !ok {
		return 0, false, err
	}
	if got != want {
		lease, got, ok, err = b.moveLease(ctx, k, owner, lease, got, start.Add(seconds(got)), want)
		if err != nil || !ok {
			return 0, false, err
		}
	}
	b.remember(owner, &held{key: k, lease: lease, ttl: got, deadline: start.Add(seconds(got))})
	return seconds(got), true, nil
}

// moveLease attaches k to a new lease of want seconds if k still holds
// owner on lease old, which then carries no key and becomes a spare. The
// key's create revision, the fencing token, does not change.
func (b *backend) moveLease(ctx context.Context, k, owner string, old clientv3.LeaseID, oldTTL int64, oldDeadline time.Time, want int64) (clientv3.LeaseID, int64, bool, error) {
	id, got, err := b.grant(ctx, want)
	if err != nil {
		return 0, 0, false, err
	}
	resp, err := b.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", owner), clientv3.Compare(clientv3.LeaseValue(k), "=", old)).
		Then(clientv3.OpPut(k, owner, clientv3.WithLease(id))).
		Commit()
	if err != nil {
		// Unknown whether the key moved: find out later and revoke
		// whichever lease it does not use.
		b.settleLater(k, owner, old, id)
		return 0, 0, false, storeErr(ctx, "refresh", err)
	}
	if !resp.Succeeded {
		b.revokeLater(id)
		return 0, 0, false, nil
	}
	b.putSpare(old, oldTTL, oldDeadline)
	return id, got, true, nil
}

// settleLater resolves an ambiguous lease move in the background: it
// revokes, of the two leases, the one the key is not attached to (both if
// the key is no longer ours). If it cannot tell, both leases simply expire.
func (b *backend) settleLater(k, owner string, old, moved clientv3.LeaseID) {
	settle := func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.cleanup)
		defer cancel()
		resp, err := b.c.Get(ctx, k)
		if err != nil {
			return
		}
		var cur clientv3.LeaseID
		if len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) == owner {
			cur = clientv3.LeaseID(resp.Kvs[0].Lease)
		}
		for _, id := range []clientv3.LeaseID{old, moved} {
			if id != cur {
				_, _ = b.c.Revoke(ctx, id)
			}
		}
	}
	if !b.goBackground(settle) {
		settle()
	}
}

// Release deletes the key in one transaction if it still holds owner on
// the lock's lease (one round trip). The lease, now carrying no key, is
// kept as a spare for the next acquisition.
//
// For a lock this backend did not acquire (the clean-up after an
// ambiguous acquisition, or another process's handle), the transaction
// compares the owner only, returns the deleted key, and the lease it was
// attached to is revoked.
func (b *backend) Release(ctx context.Context, key, owner string) (bool, error) {
	k := b.prefix + key
	h := b.lookup(owner)
	if h == nil || h.key != k {
		return b.releaseUncached(ctx, k, owner)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return false, nil
	}
	resp, err := b.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", owner), clientv3.Compare(clientv3.LeaseValue(k), "=", h.lease)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return false, storeErr(ctx, "release", err)
	}
	b.forget(owner, h)
	if !resp.Succeeded {
		// Expired, or taken away by a writer other than dlock: give up
		// the lease if it may still exist.
		if time.Now().Before(h.deadline) {
			b.revokeLater(h.lease)
		}
		return false, nil
	}
	b.putSpare(h.lease, h.ttl, h.deadline)
	return true, nil
}

func (b *backend) releaseUncached(ctx context.Context, k, owner string) (bool, error) {
	resp, err := b.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", owner)).
		Then(clientv3.OpDelete(k, clientv3.WithPrevKV())).
		Commit()
	if err != nil {
		return false, storeErr(ctx, "release", err)
	}
	if !resp.Succeeded {
		return false, nil
	}
	if del := resp.Responses[0].GetResponseDeleteRange(); del != nil {
		for _, kv := range del.PrevKvs {
			if kv.Lease != 0 {
				b.revokeLater(clientv3.LeaseID(kv.Lease))
			}
		}
	}
	return true, nil
}
