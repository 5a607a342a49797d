package zklock_test

import (
	"errors"
	"testing"

	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/once/oncetest"
)

var _ once.Store = (*zklock.Records)(nil)

func TestRecords_Conformance(t *testing.T) {
	r, err := zklock.NewRecords(servers(t), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	oncetest.Run(t, r, oncetest.Options{})
}

func TestNewRecords_NoServersIsRefused(t *testing.T) {
	if _, err := zklock.NewRecords(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Errorf("NewRecords(nil) = %v, want ErrNilDatabaseClient", err)
	}
}
