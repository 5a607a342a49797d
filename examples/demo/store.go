package main

import (
	"context"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/once"
)

// store is where the replicas meet.
type store struct {
	name    string
	backend func(ctx context.Context) (driver.Backend, error) // a new connection, as another process would open
	records once.Store
	close   func()
}

// openStore opens the store named by url, or an in-memory one when url is
// empty.
func openStore(ctx context.Context, url string) (*store, error) {
	if url == "" || url == "mem://" {
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
	cfg, err := backends.ParseURL(url)
	if err != nil {
		return nil, err
	}
	recs, err := backends.OpenRecords(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &store{
		name:    backends.Redact(url),
		backend: func(ctx context.Context) (driver.Backend, error) { return backends.OpenBackend(ctx, cfg) },
		records: recs,
		close:   func() { recs.Close() },
	}, nil
}
