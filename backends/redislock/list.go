package redislock

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/lock/driver"
)

var _ driver.Lister = (*Backend)(nil)

// scanner is the part of a single-node go-redis client that List uses.
type scanner interface {
	Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
}

// List implements [driver.Lister]: SCAN over the lock keys under the
// store's prefix (on every master of a Cluster, every shard of a Ring),
// then one inspect script per key found for its owner, token and TTL.
// It costs a round trip per key and is meant for operators' tools, not
// for hot paths. A client that cannot SCAN gets errors.ErrUnsupported.
func (b *Backend) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	match := globEscape(b.prefix) + "{" + globEscape(esc(prefix)) + "*}"
	seen := map[string]struct{}{} // SCAN may return a key more than once
	stop := errors.New("stop")
	each := func(ctx context.Context, c scanner) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, 256).Result()
			if err != nil {
				return fmt.Errorf("redislock: list: %w", err)
			}
			for _, rk := range keys {
				key, ok := unkey(b.prefix, rk)
				if !ok {
					continue
				}
				if _, dup := seen[key]; dup {
					continue
				}
				seen[key] = struct{}{}
				h, held, err := b.Inspect(ctx, key)
				if err != nil {
					return err
				}
				if held && !fn(key, h) {
					return stop
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	switch c := b.c.(type) {
	case *redis.ClusterClient:
		// One master at a time: fn is never called concurrently.
		// ForEachMaster calls its function concurrently.
		var mu sync.Mutex
		var masters []*redis.Client
		err = c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			mu.Lock()
			masters = append(masters, m)
			mu.Unlock()
			return nil
		})
		for _, m := range masters {
			if err != nil {
				break
			}
			err = each(ctx, m)
		}
	case *redis.Ring:
		var mu sync.Mutex
		var shards []*redis.Client
		err = c.ForEachShard(ctx, func(_ context.Context, s *redis.Client) error {
			mu.Lock()
			shards = append(shards, s)
			mu.Unlock()
			return nil
		})
		for _, s := range shards {
			if err != nil {
				break
			}
			err = each(ctx, s)
		}
	case scanner:
		err = each(ctx, c)
	default:
		return fmt.Errorf("redislock: list: the client cannot SCAN: %w", errors.ErrUnsupported)
	}
	if errors.Is(err, stop) {
		return nil
	}
	return err
}

// esc is the escaping of keys, for a key prefix.
func esc(s string) string {
	lk, _ := keys("", s)
	return lk[1 : len(lk)-1]
}
