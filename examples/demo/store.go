package main

import (
	"context"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/once"
)

// store is where the replicas meet.
type store struct {
	name    string
	backend func(ctx context.Context) (driver.Backend, error) // a new connection
	records once.Store
	close   func()
}

func openStore(ctx context.Context, url string) (*store, error) {
	m, err := memlock.NewStore(nil)
	if err != nil {
		return nil, err
	}
	return &store{
		name:    "in-memory (set DLOCK_URL for a real store)",
		backend: func(context.Context) (driver.Backend, error) { return m.Backend(), nil },
		records: m.Records(),
		close:   func() {},
	}, nil
}
