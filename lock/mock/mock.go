// Package mock provides testify mocks of [lock.Locker] and [lock.Lock], for
// users who want to assert on calls in their unit tests.
//
// Most tests are better served by a real in-memory store
// (backends/memlock), which passes the same conformance suite as every
// other store; reach for these mocks when a test needs a precise sequence of
// answers, such as a refresh that fails once.
package mock

import (
	"context"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/dlockgo/dlock/lock"
)

// Locker is a testify mock of [lock.Locker]. Set expectations with On; a
// call to Acquire returns the [lock.Lock] given to Return (nil allowed).
type Locker struct {
	mock.Mock
}

var _ lock.Locker = (*Locker)(nil)

// Acquire implements [lock.Locker].
func (m *Locker) Acquire(ctx context.Context, key string, ttl time.Duration) (lock.Lock, error) {
	args := m.Called(ctx, key, ttl)
	lk, _ := args.Get(0).(lock.Lock)
	return lk, args.Error(1)
}

// Ping implements [lock.Locker].
func (m *Locker) Ping(ctx context.Context) error { return m.Called(ctx).Error(0) }

// Close implements [lock.Locker].
func (m *Locker) Close() error { return m.Called().Error(0) }

// Lock is a testify mock of [lock.Lock].
type Lock struct {
	mock.Mock
}

var _ lock.Lock = (*Lock)(nil)

// Key implements [lock.Lock].
func (m *Lock) Key() string { return m.Called().String(0) }

// TTL implements [lock.Lock].
func (m *Lock) TTL() time.Duration { return m.Called().Get(0).(time.Duration) }

// Token implements [lock.Lock].
func (m *Lock) Token() uint64 { return m.Called().Get(0).(uint64) }

// Release implements [lock.Lock].
func (m *Lock) Release(ctx context.Context) error { return m.Called(ctx).Error(0) }

// Refresh implements [lock.Lock].
func (m *Lock) Refresh(ctx context.Context, ttl time.Duration) error {
	return m.Called(ctx, ttl).Error(0)
}
