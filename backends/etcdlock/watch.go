package etcdlock

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/lock/driver"
)

// watchRetry is how long a loss watcher waits before it reads the key
// again after etcd failed to answer.
const watchRetry = 250 * time.Millisecond

// NotifyLoss watches key and closes the returned channel as soon as the
// key no longer holds owner: deleted (released, or its lease expired — etcd
// deletes the key the moment the leader expires the lease) or overwritten.
// A watch that breaks (a member lost, a compaction) is re-established from a
// fresh read; while etcd cannot be reached nothing is reported, and the
// holder's refresh deadline is what ends the hold. The watcher stops when
// ctx ends or the backend is closed.
func (b *backend) NotifyLoss(ctx context.Context, key, owner string) <-chan struct{} {
	lost := make(chan struct{})
	k := b.prefix + key
	if !b.goBackground(func() { b.watchLoss(ctx, k, owner, lost) }) {
		return nil
	}
	return lost
}

func (b *backend) watchLoss(ctx context.Context, k, owner string, lost chan<- struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.life, cancel)()
	for ctx.Err() == nil {
		resp, err := b.c.Get(ctx, k)
		if err != nil {
			wait(ctx, watchRetry)
			continue
		}
		if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != owner {
			close(lost)
			return
		}
		wch := b.c.Watch(clientv3.WithRequireLeader(ctx), k, clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil || wr.Canceled {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete || string(ev.Kv.Value) != owner {
					close(lost)
					return
				}
			}
		}
		wait(ctx, watchRetry)
	}
}

// WaitFree returns when key looks free: it is absent, or a watch saw it
// deleted. It returns nil early when the watch breaks, and ctx's error
// when ctx ends.
func (b *backend) WaitFree(ctx context.Context, key string) error {
	k := b.prefix + key
	resp, err := b.c.Get(ctx, k)
	if err != nil {
		return storeErr(ctx, "wait", err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	defer context.AfterFunc(b.life, cancel)()
	wch := b.c.Watch(wctx, k, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return storeErr(ctx, "wait", err)
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	return storeErr(ctx, "wait", ctx.Err())
}

// Inspect reads key and the time its lease has left: two round trips. The
// token is the key's create revision.
func (b *backend) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	resp, err := b.c.Get(ctx, b.prefix+key)
	if err != nil {
		return driver.Holder{}, false, storeErr(ctx, "inspect", err)
	}
	if len(resp.Kvs) == 0 {
		return driver.Holder{}, false, nil
	}
	kv := resp.Kvs[0]
	h := driver.Holder{Owner: string(kv.Value), Token: uint64(kv.CreateRevision)}
	if kv.Lease != 0 {
		ttl, err := b.c.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return driver.Holder{}, false, storeErr(ctx, "inspect", err)
		}
		if ttl.TTL <= 0 {
			// The lease has just expired or been revoked: the key is
			// being deleted.
			return driver.Holder{}, false, nil
		}
		h.TTL = seconds(ttl.TTL)
	}
	return h, true, nil
}

// wait waits for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
