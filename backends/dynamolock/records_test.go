package dynamolock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/once/oncetest"
)

var _ once.Store = (*dynamolock.Records)(nil)

func TestRecords_Conformance(t *testing.T) {
	r, err := dynamolock.NewRecords(newClient(t), &dynamolock.Options{Table: testTable})
	if err != nil {
		t.Fatal(err)
	}
	oncetest.Run(t, r, oncetest.Options{})
}

func TestNewRecords_NilClientIsRefused(t *testing.T) {
	if _, err := dynamolock.NewRecords(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("NewRecords(nil) = %v, want ErrNilDatabaseClient", err)
	}
}

// A record and a lock of the same key live in one item without touching
// each other's attributes.
func TestRecords_AndALockOfTheSameKeyDoNotInterfere(t *testing.T) {
	c := newClient(t)
	b := newBackend(t, c, nil)
	r, err := dynamolock.NewRecords(c, &dynamolock.Options{Table: testTable})
	if err != nil {
		t.Fatal(err)
	}
	ctx, key := ctxT(t), randomKey(t)
	g, ok, err := b.TryAcquire(ctx, key, "0123456789abcdef0123456789abcdef", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	if done, _, err := r.Begin(ctx, key, g.Token, 0); err != nil || done {
		t.Fatalf("Begin = %v, %v", done, err)
	}
	if ok, err := r.Complete(ctx, key, g.Token, 0); err != nil || !ok {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	h, held, err := b.Inspect(ctx, key)
	if err != nil || !held || h.Token != g.Token {
		t.Errorf("the lock after the record: %+v, %v, %v; want held with token %d", h, held, err, g.Token)
	}
	if ok, err := b.Release(ctx, key, "0123456789abcdef0123456789abcdef"); err != nil || !ok {
		t.Errorf("Release = %v, %v", ok, err)
	}
	if done, by, err := r.Done(ctx, key); err != nil || !done || by != g.Token {
		t.Errorf("Done after the release = %v, %d, %v; want true, %d", done, by, err, g.Token)
	}
}
