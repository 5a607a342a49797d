package torture

import (
	"context"
	"fmt"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Register is the fenced register the clients write through: a value per
// key that accepts a write only when its token is not smaller than the
// token of every write it accepted before. A holder writes twice with its
// token (on entry and at the end of its work), hence "not smaller" rather
// than "larger"; a stale holder's token is always smaller than its
// successor's.
type Register interface {
	// Write offers token for key and reports whether it was accepted.
	Write(ctx context.Context, key string, token uint64) (bool, error)
	// Close closes the register's client.
	Close() error
}

// regKey is the register's key for a lock key.
func regKey(key string) string { return "torture-register/" + key }

// pad makes decimal tokens compare as strings in numeric order.
func pad(token uint64) string { return fmt.Sprintf("%020d", token) }

// OpenRegister connects to the register in the store that the lock URL
// names (the lock's own server).
func OpenRegister(ctx context.Context, rawURL string) (Register, error) {
	cfg, err := backends.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch cfg.Store {
	case backends.Redis:
		c := redis.NewClient(&redis.Options{Addr: cfg.Addrs[0], DB: cfg.RedisDB, Username: cfg.Username, Password: cfg.Password})
		return redisRegister{c}, nil
	case backends.Postgres:
		c, err := pgx.Connect(ctx, cfg.PostgresDSN)
		if err != nil {
			return nil, err
		}
		return &pgRegister{c}, nil
	case backends.Etcd:
		c, err := clientv3.New(clientv3.Config{Endpoints: cfg.Addrs, DialTimeout: 5 * time.Second, Username: cfg.Username, Password: cfg.Password})
		if err != nil {
			return nil, err
		}
		return etcdRegister{c}, nil
	}
	return nil, fmt.Errorf("torture: no fenced register for store %q", cfg.Store)
}

// PrepareRegister creates what the register needs before clients start:
// the PostgreSQL table, the etcd keys.
func PrepareRegister(ctx context.Context, rawURL string, keys []string) error {
	cfg, err := backends.ParseURL(rawURL)
	if err != nil {
		return err
	}
	switch cfg.Store {
	case backends.Postgres:
		c, err := pgx.Connect(ctx, cfg.PostgresDSN)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, `CREATE TABLE IF NOT EXISTS torture_register (key text PRIMARY KEY, fence numeric(20) NOT NULL)`)
		return err
	case backends.Etcd:
		r, err := OpenRegister(ctx, rawURL)
		if err != nil {
			return err
		}
		defer r.Close()
		for _, k := range keys {
			if _, err := r.(etcdRegister).c.Put(ctx, regKey(k), pad(0)); err != nil {
				return err
			}
		}
	}
	return nil
}

// redisFence writes ARGV[1] (a padded token) unless a larger one is stored.
var redisFence = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur > ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', 3600)
return 1
`)

type redisRegister struct{ c *redis.Client }

func (r redisRegister) Write(ctx context.Context, key string, token uint64) (bool, error) {
	n, err := redisFence.Run(ctx, r.c, []string{regKey(key)}, pad(token)).Int()
	return n == 1, err
}

func (r redisRegister) Close() error { return r.c.Close() }

type pgRegister struct{ c *pgx.Conn }

func (r *pgRegister) Write(ctx context.Context, key string, token uint64) (bool, error) {
	tag, err := r.c.Exec(ctx, `INSERT INTO torture_register (key, fence) VALUES ($1, $2::numeric)
ON CONFLICT (key) DO UPDATE SET fence = EXCLUDED.fence WHERE torture_register.fence <= EXCLUDED.fence`,
		key, fmt.Sprint(token))
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

func (r *pgRegister) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.c.Close(ctx)
}

type etcdRegister struct{ c *clientv3.Client }

func (r etcdRegister) Write(ctx context.Context, key string, token uint64) (bool, error) {
	k, v := regKey(key), pad(token)
	resp, err := r.c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), ">", v)).
		Else(clientv3.OpPut(k, v)).
		Commit()
	if err != nil {
		return false, err
	}
	if !resp.Succeeded {
		// The compare also fails for a missing key; the key is created by
		// PrepareRegister, so a failure means the put ran.
		return true, nil
	}
	return false, nil
}

func (r etcdRegister) Close() error { return r.c.Close() }
