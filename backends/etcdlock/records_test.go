package etcdlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/once/oncetest"
)

func TestRecords_Conformance(t *testing.T) {
	r, err := etcdlock.NewRecords(newClient(t, testenv.Etcd, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	oncetest.Run(t, r, oncetest.Options{RetentionGranularity: time.Second})
}

func TestRecords_NilClient(t *testing.T) {
	if _, err := etcdlock.NewRecords(nil, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
		t.Fatalf("NewRecords(nil): %v", err)
	}
}
