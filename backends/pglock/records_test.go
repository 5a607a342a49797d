package pglock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/once/oncetest"
)

var _ once.Store = (*pglock.Records)(nil)

func TestRecords_Conformance(t *testing.T) {
	r, err := pglock.NewRecords(ctxFor(t), sharedPool(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	oncetest.Run(t, r, oncetest.Options{})
}

func TestNewRecords_NilPool(t *testing.T) {
	if _, err := pglock.NewRecords(context.Background(), nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("NewRecords(nil) = %v, want ErrNilDatabaseClient", err)
	}
}
