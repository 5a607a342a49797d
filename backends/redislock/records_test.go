package redislock_test

import (
	"testing"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/once"
	"github.com/dlockgo/dlock/once/oncetest"
)

var _ once.Store = (*redislock.Records)(nil)

func TestRecords_Conformance(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		r, err := redislock.NewRecords(singleClient(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		oncetest.Run(t, r, oncetest.Options{})
	})
	t.Run("cluster", func(t *testing.T) {
		r, err := redislock.NewRecords(clusterClient(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		oncetest.Run(t, r, oncetest.Options{})
	})
}
