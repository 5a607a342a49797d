package etcdlock

import (
	"context"
	"encoding/binary"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/lock"
)

// DefaultRecordsPrefix is the prefix of the keys of [Records] when
// [RecordsOptions.KeyPrefix] is empty.
const DefaultRecordsPrefix = "/dlock-once/"

// RecordsOptions configure [NewRecords]. The zero value, and nil, mean the
// defaults.
type RecordsOptions struct {
	// KeyPrefix is put before the keys of the records. It must not be
	// the prefix of a Locker's keys. Default: [DefaultRecordsPrefix].
	KeyPrefix string
}

// Records keeps the completion records and fences of package once in etcd:
// for each key, a fence (the highest token that began a run) and, once a
// run completed, a record of its token, both as 8-byte big-endian values so
// that etcd compares them in numeric order. Every method is one
// transaction, plus a lease grant when a retention is asked for (records
// are then attached to a lease of that many seconds, rounded up to the
// server's minimum; a lease a key moved away from simply expires). It is
// safe for concurrent use; it does not own the client.
type Records struct {
	c      *clientv3.Client
	prefix string
}

// NewRecords returns the completion records of package once, kept in etcd
// through client. It returns [lock.ErrNilDatabaseClient] when client is nil.
func NewRecords(client *clientv3.Client, opts *RecordsOptions) (*Records, error) {
	if client == nil {
		return nil, lock.ErrNilDatabaseClient
	}
	r := &Records{c: client, prefix: DefaultRecordsPrefix}
	if opts != nil && opts.KeyPrefix != "" {
		r.prefix = opts.KeyPrefix
	}
	return r, nil
}

func (r *Records) keys(key string) (fence, done string) {
	return r.prefix + "fence/" + key, r.prefix + "done/" + key
}

func encodeToken(t uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], t)
	return string(b[:])
}

func decodeToken(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// lease grants a lease for retention, or returns 0 (no lease: kept
// forever) when retention is not positive.
func (r *Records) lease(ctx context.Context, op string, retention time.Duration) (clientv3.LeaseID, error) {
	if retention <= 0 {
		return 0, nil
	}
	s := max(int64((retention+time.Second-1)/time.Second), 1)
	g, err := r.c.Grant(ctx, s)
	if err != nil {
		return 0, storeErr(ctx, op, err)
	}
	return g.ID, nil
}

// unused revokes a lease that the transaction did not use.
func (r *Records) unused(ctx context.Context, id clientv3.LeaseID) {
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultCleanupTimeout)
	defer cancel()
	_, _ = r.c.Revoke(ctx, id)
}

// Begin implements once.Store: in one transaction, if key has a record it
// is returned; otherwise the fence is raised to token (or kept, if higher)
// and attached to the retention's lease.
func (r *Records) Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error) {
	fence, done := r.keys(key)
	id, err := r.lease(ctx, "begin", retention)
	if err != nil {
		return false, 0, err
	}
	tok := encodeToken(token)
	raise := clientv3.OpPut(fence, tok, clientv3.WithLease(id))
	keep := clientv3.OpPut(fence, "", clientv3.WithIgnoreValue(), clientv3.WithLease(id))
	resp, err := r.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(done), ">", 0)).
		Then(clientv3.OpGet(done)).
		Else(clientv3.OpTxn(
			// A value comparison fails on a missing key: test
			// existence first.
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(fence), "=", 0)},
			[]clientv3.Op{raise},
			[]clientv3.Op{clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Value(fence), "<", tok)},
				[]clientv3.Op{raise},
				[]clientv3.Op{keep},
			)},
		)).
		Commit()
	if err != nil {
		// Revoking would drop a fence that may have been raised, letting
		// an older run complete: leave the lease to expire.
		return false, 0, storeErr(ctx, "begin", err)
	}
	if resp.Succeeded {
		r.unused(ctx, id)
		var by uint64
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			by = decodeToken(kvs[0].Value)
		}
		return true, by, nil
	}
	return false, 0, nil
}

// Complete implements once.Store: in one transaction, if key has no record
// and its fence is token, the record is written and both are attached to
// the retention's lease.
func (r *Records) Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error) {
	fence, done := r.keys(key)
	id, err := r.lease(ctx, "complete", retention)
	if err != nil {
		return false, err
	}
	tok := encodeToken(token)
	resp, err := r.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(done), "=", 0), clientv3.Compare(clientv3.Value(fence), "=", tok)).
		Then(clientv3.OpPut(done, tok, clientv3.WithLease(id)),
			clientv3.OpPut(fence, "", clientv3.WithIgnoreValue(), clientv3.WithLease(id))).
		Commit()
	if err != nil {
		// Revoking would delete a record that may have been written:
		// leave the lease to expire after the retention.
		return false, storeErr(ctx, "complete", err)
	}
	if !resp.Succeeded {
		r.unused(ctx, id)
		return false, nil
	}
	return true, nil
}

// Done implements once.Store.
func (r *Records) Done(ctx context.Context, key string) (bool, uint64, error) {
	_, done := r.keys(key)
	resp, err := r.c.Get(ctx, done)
	if err != nil {
		return false, 0, storeErr(ctx, "done", err)
	}
	if len(resp.Kvs) == 0 {
		return false, 0, nil
	}
	return true, decodeToken(resp.Kvs[0].Value), nil
}
