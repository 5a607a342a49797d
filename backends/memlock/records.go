package memlock

import (
	"context"
	"sync"
	"time"
)

// Records keeps completion records and fences for package once, in memory.
// It is safe for concurrent use. Make one per Store with [Store.Records];
// like the locks, records do not survive the process.
type Records struct {
	mu   sync.Mutex
	recs map[string]record
}

type record struct {
	fence   uint64
	done    bool
	by      uint64
	expires time.Time // zero: kept forever
}

// Records returns the completion records of s, for once.Do. Every call
// returns the same Records.
func (s *Store) Records() *Records { return s.recs }

func (r *Records) get(key string, now time.Time) record {
	rec, ok := r.recs[key]
	if ok && !rec.expires.IsZero() && !now.Before(rec.expires) {
		delete(r.recs, key)
		return record{}
	}
	return rec
}

func expiry(now time.Time, retention time.Duration) time.Time {
	if retention <= 0 {
		return time.Time{}
	}
	return now.Add(retention)
}

// Begin implements once.Store.
func (r *Records) Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.get(key, now)
	if rec.done {
		return true, rec.by, nil
	}
	rec.fence = max(rec.fence, token)
	rec.expires = expiry(now, retention)
	r.recs[key] = rec
	return false, 0, nil
}

// Complete implements once.Store.
func (r *Records) Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.get(key, now)
	if rec.done || rec.fence != token {
		return false, nil
	}
	rec.done, rec.by, rec.expires = true, token, expiry(now, retention)
	r.recs[key] = rec
	return true, nil
}

// Done implements once.Store.
func (r *Records) Done(ctx context.Context, key string) (bool, uint64, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.get(key, time.Now())
	return rec.done, rec.by, nil
}
