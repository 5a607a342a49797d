package zklock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Records keeps the completion records and fences of package once in
// ZooKeeper: one persistent node per key, Root/r/<escaped key>, whose data
// is the fence, the token of the completed run ("-" until then) and the
// time the record is forgotten (ms since the Unix epoch by this client's
// clock; 0: kept). Begin and Complete read the node and write it back only
// if its version has not changed, reading again when another writer got
// in between, so each method takes effect atomically. Records open their
// own session; Close ends it. They are safe for concurrent use.
type Records struct {
	b   *backend
	now func() time.Time
}

// NewRecords returns the completion records of package once, kept under
// the Root of opts (the TTL and Lock options are ignored) on the ensemble
// at servers. It returns [lock.ErrNilDatabaseClient] when servers is empty.
func NewRecords(servers []string, opts *Options) (*Records, error) {
	b, err := newBackend(servers, opts)
	if err != nil {
		return nil, err
	}
	return &Records{b: b, now: time.Now}, nil
}

// Close ends the Records' session.
func (r *Records) Close() error { return r.b.Close() }

// record is the data of a record node.
type record struct {
	fence   uint64
	done    bool
	by      uint64
	expires int64 // ms since the Unix epoch; 0: kept
}

func (rec record) live(now int64) bool { return rec.expires == 0 || rec.expires > now }

func (rec record) encode() []byte {
	by := "-"
	if rec.done {
		by = strconv.FormatUint(rec.by, 10)
	}
	return fmt.Appendf(nil, "%d %s %d", rec.fence, by, rec.expires)
}

func decodeRecord(data []byte) (record, error) {
	f := strings.Fields(string(data))
	if len(f) != 3 {
		return record{}, fmt.Errorf("zklock: malformed once record %q", data)
	}
	var rec record
	var err error
	if rec.fence, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return record{}, fmt.Errorf("zklock: malformed once record %q: %w", data, err)
	}
	if f[1] != "-" {
		rec.done = true
		if rec.by, err = strconv.ParseUint(f[1], 10, 64); err != nil {
			return record{}, fmt.Errorf("zklock: malformed once record %q: %w", data, err)
		}
	}
	if rec.expires, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return record{}, fmt.Errorf("zklock: malformed once record %q: %w", data, err)
	}
	return rec, nil
}

func expiresAt(now int64, retention time.Duration) int64 {
	if retention <= 0 {
		return 0
	}
	return now + int64((retention+time.Millisecond-1)/time.Millisecond) // rounded up
}

// read returns key's record and its node's version; exists is false when
// there is no node.
func (r *Records) read(ctx context.Context, s *session, key string) (rec record, version int32, exists bool, err error) {
	type got struct {
		data []byte
		stat *zk.Stat
	}
	g, err := call(ctx, r.b, func() (got, error) {
		data, stat, err := s.conn.Get(r.b.p.record(key))
		return got{data, stat}, err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return record{}, 0, false, nil
	case err != nil:
		return record{}, 0, false, err
	}
	rec, err = decodeRecord(g.data)
	return rec, g.stat.Version, true, err
}

// write stores rec as key's record if the node is still at version (or
// still missing, when !exists); ok is false when another writer got there
// first.
func (r *Records) write(ctx context.Context, s *session, key string, rec record, version int32, exists bool) (bool, error) {
	p := r.b.p.record(key)
	if exists {
		_, err := call(ctx, r.b, func() (*zk.Stat, error) { return s.conn.Set(p, rec.encode(), version) })
		if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
			return false, nil
		}
		return err == nil, err
	}
	_, err := call(ctx, r.b, func() (string, error) { return s.conn.Create(p, rec.encode(), 0, acl) })
	if errors.Is(err, zk.ErrNoNode) { // the directories are missing
		if err := r.b.makeParents(ctx, s); err != nil {
			return false, err
		}
		return false, nil
	}
	if errors.Is(err, zk.ErrNodeExists) {
		return false, nil
	}
	return err == nil, err
}

// Begin implements once.Store.Begin.
func (r *Records) Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error) {
	s, err := r.b.base()
	if err != nil {
		return false, 0, storeErr(ctx, "once begin", err)
	}
	for {
		rec, version, exists, err := r.read(ctx, s, key)
		if err != nil {
			return false, 0, storeErr(ctx, "once begin", err)
		}
		now := r.now().UnixMilli()
		if exists && rec.live(now) {
			if rec.done {
				return true, rec.by, nil
			}
			if rec.fence >= token {
				return false, 0, nil
			}
		}
		ok, err := r.write(ctx, s, key, record{fence: token, expires: expiresAt(now, retention)}, version, exists)
		if err != nil {
			return false, 0, storeErr(ctx, "once begin", err)
		}
		if ok {
			return false, 0, nil
		}
	}
}

// Complete implements once.Store.Complete.
func (r *Records) Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error) {
	s, err := r.b.base()
	if err != nil {
		return false, storeErr(ctx, "once complete", err)
	}
	for {
		rec, version, exists, err := r.read(ctx, s, key)
		if err != nil {
			return false, storeErr(ctx, "once complete", err)
		}
		now := r.now().UnixMilli()
		if !exists || !rec.live(now) || rec.done || rec.fence != token {
			return false, nil
		}
		ok, err := r.write(ctx, s, key, record{fence: token, done: true, by: token, expires: expiresAt(now, retention)}, version, true)
		if err != nil {
			return false, storeErr(ctx, "once complete", err)
		}
		if ok {
			return true, nil
		}
	}
}

// Done implements once.Store.Done.
func (r *Records) Done(ctx context.Context, key string) (bool, uint64, error) {
	s, err := r.b.base()
	if err != nil {
		return false, 0, storeErr(ctx, "once done", err)
	}
	rec, _, exists, err := r.read(ctx, s, key)
	if err != nil {
		return false, 0, storeErr(ctx, "once done", err)
	}
	if !exists || !rec.live(r.now().UnixMilli()) || !rec.done {
		return false, 0, nil
	}
	return true, rec.by, nil
}
