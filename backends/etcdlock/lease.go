package etcdlock

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/lock/driver"
)

// TryAcquire grants a lease for ttl and, in one transaction, attaches the
// key to it if the key does not exist: two round trips. The fencing token
// is the revision of that transaction, which is the key's create revision.
// A refused attempt revokes its lease in the background.
func (b *backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	k := b.prefix + key
	start := time.Now()
	id, granted, err := b.grant(ctx, b.leaseSeconds(ttl))
	if err != nil {
		return driver.Grant{}, false, err
	}
	resp, err := b.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, owner, clientv3.WithLease(id))).
		Commit()
	if err != nil {
		// The put may have been applied. Revoking the lease deletes the
		// key only if it is attached to it, that is, only if it is ours.
		b.revokeLater(id)
		return driver.Grant{}, false, storeErr(ctx, "acquire", err)
	}
	if !resp.Succeeded {
		b.revokeLater(id)
		return driver.Grant{}, false, nil
	}
	b.remember(owner, &held{key: k, lease: id, ttl: granted, deadline: start.Add(seconds(granted))})
	return driver.Grant{Token: uint64(resp.Header.Revision), TTL: seconds(granted)}, true, nil
}

// Refresh renews the lock's lease with one keepalive (one round trip) when
// the TTL asked for needs a lease of the same length; otherwise it moves
// the key to a new lease (three round trips). A live lease of ours always
// carries our key: keys are attached only to their owner's lease, and a
// key that is deleted or expires takes no other owner's lease with it.
func (b *backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	k := b.prefix + key
	want := b.leaseSeconds(ttl)
	h := b.lookup(owner)
	if h == nil || h.key != k {
		return b.refreshUncached(ctx, k, owner, want)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	start := time.Now()
	if want == h.ttl {
		got, err := b.keepAliveOnce(ctx, h.lease)
		if err != nil {
			return 0, false, err
		}
		if got == 0 {
			b.forget(owner, h)
			return 0, false, nil
		}
		h.ttl, h.deadline = got, start.Add(seconds(got))
		return seconds(got), true, nil
	}
	id, got, ok, err := b.moveLease(ctx, k, owner, h.lease, want)
	if err != nil || !ok {
		b.forget(owner, h)
		return 0, false, err
	}
	h.lease, h.ttl, h.deadline = id, got, start.Add(seconds(got))
	return seconds(got), true, nil
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
	got, err := b.keepAliveOnce(ctx, lease)
	if err != nil || got == 0 {
		return 0, false, err
	}
	if got != want {
		var ok bool
		lease, got, ok, err = b.moveLease(ctx, k, owner, lease, want)
		if err != nil || !ok {
			return 0, false, err
		}
	}
	b.remember(owner, &held{key: k, lease: lease, ttl: got, deadline: start.Add(seconds(got))})
	return seconds(got), true, nil
}

// moveLease attaches k to a new lease of want seconds if k still holds
// owner, and revokes the old lease, which then carries no key. The key's
// create revision, the fencing token, does not change.
func (b *backend) moveLease(ctx context.Context, k, owner string, old clientv3.LeaseID, want int64) (clientv3.LeaseID, int64, bool, error) {
	id, got, err := b.grant(ctx, want)
	if err != nil {
		return 0, 0, false, err
	}
	resp, err := b.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", owner)).
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
	b.revokeLater(old)
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

// Release revokes the lock's lease, which deletes the key with it: one
// round trip. Revoking our lease can never delete another owner's key,
// because a key is only ever attached to its own owner's lease. A lease
// that no longer exists means the lock had expired: ok == false.
//
// For a lock this backend did not acquire (the clean-up after an
// ambiguous acquisition, or another process's handle), Release deletes the
// key in a transaction if it still holds owner, then revokes the lease the
// key was attached to.
func (b *backend) Release(ctx context.Context, key, owner string) (bool, error) {
	k := b.prefix + key
	h := b.lookup(owner)
	if h == nil || h.key != k {
		return b.releaseUncached(ctx, k, owner)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := b.c.Revoke(ctx, h.lease)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		b.forget(owner, h)
		return false, nil
	}
	if err != nil {
		return false, storeErr(ctx, "release", err)
	}
	b.forget(owner, h)
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
