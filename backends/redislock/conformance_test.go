package redislock_test

import (
	"testing"

	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestConformance(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		c := singleClient(t)
		locktest.Run(t, func(t *testing.T) driver.Backend {
			b, err := redislock.NewBackend(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, locktest.Options{})
	})
	t.Run("cluster", func(t *testing.T) {
		c := clusterClient(t)
		locktest.Run(t, func(t *testing.T) driver.Backend {
			b, err := redislock.NewBackend(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, locktest.Options{})
	})
}
