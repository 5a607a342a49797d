package etcdlock

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/lock/driver"
)

var _ driver.Lister = (*backend)(nil)

// listPage is the number of keys List reads per range request.
const listPage = 256

// List implements [driver.Lister]: a paged range read over KeyPrefix +
// prefix, then one TimeToLive per key for the time its lease has left. A
// key under the prefix that is not a lock of this package (no lease, or a
// value that is not an owner string) is skipped.
func (b *backend) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	from := b.prefix + prefix
	end := clientv3.GetPrefixRangeEnd(from)
	for {
		resp, err := b.c.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(listPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return storeErr(ctx, "list", err)
		}
		for _, kv := range resp.Kvs {
			if kv.Lease == 0 || !isOwner(kv.Value) {
				continue
			}
			ttl, err := b.c.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				return storeErr(ctx, "list", err)
			}
			if ttl.TTL <= 0 {
				continue // expiring right now
			}
			h := driver.Holder{Owner: string(kv.Value), Token: uint64(kv.CreateRevision), TTL: seconds(ttl.TTL)}
			if !fn(string(kv.Key[len(b.prefix):]), h) {
				return nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// isOwner reports whether v looks like an owner string of package lock:
// 32 lowercase hexadecimal digits, then nothing or a colon and more.
func isOwner(v []byte) bool {
	if len(v) < 32 || (len(v) > 32 && v[32] != ':') {
		return false
	}
	for _, c := range v[:32] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
