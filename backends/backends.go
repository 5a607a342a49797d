// Package backends opens a lock store chosen at run time, from a [Config]
// or a URL such as redis://127.0.0.1:6379 or etcd://h1:2379,h2:2379.
//
// It is the only package of the library that imports every store; programs
// that know their store at compile time can import that store's package
// alone. The library never reads the environment: programs (the examples,
// cmd/dlock) read DLOCK_URL and pass it to [OpenURL].
//
// What Open, OpenBackend and OpenRecords return owns the client they
// created: its Close closes the client too. Errors never contain the
// store's password.
package backends

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/backends/redislock"
	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Config names a store and how to reach it. [ParseURL] makes one from a
// URL.
type Config struct {
	// Store is the kind of store: [Memory], [Redis], [Postgres], [Etcd],
	// [ZooKeeper] or [DynamoDB].
	Store string
	// Addrs are the servers' host:port addresses (Redis: one server, the
	// seeds of a Cluster, or Sentinels; etcd: endpoints). PostgreSQL uses
	// PostgresDSN instead.
	Addrs []string
	// Username and Password authenticate to Redis or etcd.
	Username, Password string
	// TLS connects with TLS (rediss://, etcd ?tls=true).
	TLS bool
	// Identity is stored with every lock (see lock.Options.Identity).
	Identity string
	// Prefix is the store's key prefix (Redis, etcd, DynamoDB) or namespace
	// (PostgreSQL). Default: each store's own.
	Prefix string

	// RedisDB selects the database of a single Redis server.
	RedisDB int
	// RedisMaster, when set, is the Sentinel master name: Addrs are then
	// Sentinels.
	RedisMaster string
	// RedisCluster forces a Cluster client even for a single seed address;
	// several Addrs always make one.
	RedisCluster bool

	// PostgresDSN is the pgx connection string.
	PostgresDSN string
	// PostgresEnforceTTL selects pglock's server-enforced TTL mode.
	PostgresEnforceTTL bool
	// PostgresSessions is the number of sessions pglock shares its locks
	// over. Default: pglock's.
	PostgresSessions int
	// PostgresRecordHolders makes pglock record holders, so that they can
	// be inspected (leader observation, dlock ls).
	PostgresRecordHolders bool

	// DialTimeout bounds connecting to etcd. Default: 5s.
	DialTimeout time.Duration

	// DynamoDBTable is the lock table. Default: dynamolock's ("dlock").
	// For DynamoDB, Addrs holds at most one host:port, the endpoint to
	// use instead of AWS's regional one (DynamoDB Local, dynalite, a VPC
	// endpoint); TLS selects https for it (ParseURL sets TLS unless
	// tls=false; AWS's own endpoint is always https). Username and
	// Password, when set, are a static access key ID and secret;
	// otherwise the credentials come from the AWS SDK's default chain
	// (environment, shared files, SSO, container or instance role), except
	// for a loopback endpoint, which gets fixed dummy credentials: local
	// emulators do not check them, and the chain would otherwise reach
	// for the EC2 metadata service.
	DynamoDBTable string
	// DynamoDBRegion is the AWS region. Default: the SDK's default chain
	// (AWS_REGION, the shared config file), and us-east-1 for a loopback
	// endpoint.
	DynamoDBRegion string
	// DynamoDBCreateTable makes Open create the lock table when it does
	// not exist (dynamolock.CreateTable), for development. Production
	// tables are created once, at deployment.
	DynamoDBCreateTable bool
	// ZooKeeperSessionTimeout and ZooKeeperMaxSessionTimeout bound the
	// sessions zklock opens (zklock.Options). Default: zklock's.
	ZooKeeperSessionTimeout, ZooKeeperMaxSessionTimeout time.Duration
	// ZooKeeperAdvisoryTTL selects zklock's AdvisoryTTL mode.
	ZooKeeperAdvisoryTTL bool
}

// OpenURL is [ParseURL] followed by [Open].
func OpenURL(ctx context.Context, rawURL string) (lock.Locker, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return Open(ctx, cfg)
}

// Open connects to the store that cfg names and returns a Locker on it. It
// returns [lock.ErrNilConfig] for a nil cfg, an error wrapping
// [ErrInvalidURL] for an unknown store, and the store's error when it
// cannot be reached.
func Open(ctx context.Context, cfg *Config) (lock.Locker, error) {
	b, err := OpenBackend(ctx, cfg)
	if err != nil {
		return nil, err
	}
	l, err := lock.New(b, &lock.Options{Identity: cfg.Identity})
	if err != nil {
		b.Close()
		return nil, err
	}
	return l, nil
}

// OpenBackend is [Open] without the Locker: the store's [driver.Backend],
// which owns the client it created. It is for programs that wrap the
// Backend (fault injection, a Locker with other options).
func OpenBackend(ctx context.Context, cfg *Config) (driver.Backend, error) {
	if cfg == nil {
		return nil, lock.ErrNilConfig
	}
	switch cfg.Store {
	case Memory:
		s, err := memlock.NewStore(nil)
		if err != nil {
			return nil, err
		}
		return s.Backend(), nil
	case Redis:
		client := redisClient(cfg)
		b, err := redislock.NewBackend(client, &redislock.Options{KeyPrefix: cfg.Prefix})
		if err != nil {
			client.Close()
			return nil, err
		}
		if err := b.Ping(ctx); err != nil {
			client.Close()
			return nil, fmt.Errorf("backends: redis: %w", err)
		}
		return own(b, client.Close), nil
	case Postgres:
		pool, err := pgPool(ctx, cfg)
		if err != nil {
			return nil, err
		}
		b, err := pglock.NewBackend(ctx, pool, pgOptions(cfg))
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("backends: postgres: %w", err)
		}
		return own(b, func() error { pool.Close(); return nil }), nil
	case Etcd:
		client, err := etcdClient(ctx, cfg)
		if err != nil {
			return nil, err
		}
		b, err := etcdlock.NewBackend(client, &etcdlock.Options{KeyPrefix: cfg.Prefix})
		if err != nil {
			client.Close()
			return nil, err
		}
		if err := b.Ping(ctx); err != nil {
			b.Close()
			client.Close()
			return nil, fmt.Errorf("backends: etcd: %w", err)
		}
		return own(b, client.Close), nil
	case DynamoDB:
		return openDynamoDB(ctx, cfg)
	case ZooKeeper:
		return zkBackend(ctx, cfg)
	}
	return nil, fmt.Errorf("%w: unknown store %q", ErrInvalidURL, cfg.Store)
}

// zkBackend opens zklock's backend, which owns the sessions it opens, and
// checks that the ensemble answers.
func zkBackend(ctx context.Context, cfg *Config) (driver.Backend, error) {
	b, err := zklock.NewBackend(cfg.Addrs, zkOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("backends: zookeeper: %w", err)
	}
	if err := b.Ping(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("backends: zookeeper: %w", err)
	}
	return b, nil
}

func zkOptions(cfg *Config) *zklock.Options {
	return &zklock.Options{
		Root:              cfg.Prefix,
		SessionTimeout:    cfg.ZooKeeperSessionTimeout,
		MaxSessionTimeout: cfg.ZooKeeperMaxSessionTimeout,
		AdvisoryTTL:       cfg.ZooKeeperAdvisoryTTL,
	}
}

// Records is the store of completion records of package once; it
// satisfies once.Store. Close closes the client OpenRecords created.
type Records interface {
	// Begin is once.Store's Begin.
	Begin(ctx context.Context, key string, token uint64, retention time.Duration) (done bool, by uint64, err error)
	// Complete is once.Store's Complete.
	Complete(ctx context.Context, key string, token uint64, retention time.Duration) (ok bool, err error)
	// Done is once.Store's Done.
	Done(ctx context.Context, key string) (done bool, by uint64, err error)
	// Close closes the client OpenRecords created.
	Close() error
}

// OpenRecords connects to the store that cfg names and returns its
// completion records for package once. For mem:// the records live in a
// new in-memory store of their own: use memlock.Store.Records to share one
// with a Locker.
func OpenRecords(ctx context.Context, cfg *Config) (Records, error) {
	if cfg == nil {
		return nil, lock.ErrNilConfig
	}
	switch cfg.Store {
	case Memory:
		s, err := memlock.NewStore(nil)
		if err != nil {
			return nil, err
		}
		return records{s.Records(), func() error { return nil }}, nil
	case Redis:
		client := redisClient(cfg)
		r, err := redislock.NewRecords(client, &redislock.Options{KeyPrefix: cfg.Prefix})
		if err != nil {
			client.Close()
			return nil, err
		}
		return records{r, client.Close}, nil
	case Postgres:
		pool, err := pgPool(ctx, cfg)
		if err != nil {
			return nil, err
		}
		r, err := pglock.NewRecords(ctx, pool, pgOptions(cfg))
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("backends: postgres: %w", err)
		}
		return records{r, func() error { pool.Close(); return nil }}, nil
	case Etcd:
		client, err := etcdClient(ctx, cfg)
		if err != nil {
			return nil, err
		}
		var ro *etcdlock.RecordsOptions
		if cfg.Prefix != "" {
			ro = &etcdlock.RecordsOptions{KeyPrefix: cfg.Prefix + "once/"}
		}
		r, err := etcdlock.NewRecords(client, ro)
		if err != nil {
			client.Close()
			return nil, err
		}
		return records{r, client.Close}, nil
	case DynamoDB:
		dc, err := connectDynamoDB(ctx, cfg)
		if err != nil {
			return nil, err
		}
		r, err := dynamolock.NewRecords(dc.client, dc.opts)
		if err != nil {
			dc.close()
			return nil, fmt.Errorf("backends: dynamodb: %w", err)
		}
		return records{r, dc.close}, nil
	case ZooKeeper:
		r, err := zklock.NewRecords(cfg.Addrs, zkOptions(cfg))
		if err != nil {
			return nil, fmt.Errorf("backends: zookeeper: %w", err)
		}
		if _, _, err := r.Done(ctx, "\x00dlock-ping"); err != nil {
			r.Close()
			return nil, fmt.Errorf("backends: zookeeper: %w", err)
		}
		return records{r, r.Close}, nil
	}
	return nil, fmt.Errorf("%w: unknown store %q", ErrInvalidURL, cfg.Store)
}

type recordStore interface {
	Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error)
	Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error)
	Done(ctx context.Context, key string) (bool, uint64, error)
}

type records struct {
	recordStore
	close func() error
}

func (r records) Close() error { return r.close() }

func redisClient(cfg *Config) redis.UniversalClient {
	opts := &redis.UniversalOptions{
		Addrs:         cfg.Addrs,
		Username:      cfg.Username,
		Password:      cfg.Password,
		DB:            cfg.RedisDB,
		MasterName:    cfg.RedisMaster,
		IsClusterMode: cfg.RedisCluster,
		// The client honours context deadlines, so redislock can make a
		// call with a deadline (Hold's refreshes, waits bounded by a
		// timeout) on the caller's goroutine instead of handing it to
		// another one to return on time (see redislock's documentation:
		// the hand-off costs 1.2–2.4 × on a loaded machine).
		ContextTimeoutEnabled: true,
	}
	if cfg.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewUniversalClient(opts)
}

func pgPool(ctx context.Context, cfg *Config) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.PostgresDSN)
	if err != nil {
		// pgx's parse errors may quote the connection string.
		return nil, fmt.Errorf("%w: postgres: cannot parse the connection string", ErrInvalidURL)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("backends: postgres: %w", err)
	}
	return pool, nil
}

func pgOptions(cfg *Config) *pglock.Options {
	return &pglock.Options{
		Lock:          lock.Options{Identity: cfg.Identity},
		Namespace:     cfg.Prefix,
		EnforceTTL:    cfg.PostgresEnforceTTL,
		Sessions:      cfg.PostgresSessions,
		RecordHolders: cfg.PostgresRecordHolders,
	}
}

func etcdClient(ctx context.Context, cfg *Config) (*clientv3.Client, error) {
	dial := cfg.DialTimeout
	if dial == 0 {
		dial = 5 * time.Second
	}
	ecfg := clientv3.Config{
		Endpoints:   cfg.Addrs,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: dial,
		Context:     context.WithoutCancel(ctx),
	}
	if cfg.TLS {
		ecfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	client, err := clientv3.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("backends: etcd: %w", err)
	}
	return client, nil
}

// owned is a Backend that closes the client Open created for it when it is
// closed. It forwards the optional capabilities of the Backend it wraps,
// answering errors.ErrUnsupported (or a nil channel) where that has none.
type owned struct {
	driver.Backend
	closeClient func() error
	once        sync.Once
}

func own(b driver.Backend, closeClient func() error) *owned {
	return &owned{Backend: b, closeClient: closeClient}
}

var (
	_ driver.LossNotifier = (*owned)(nil)
	_ driver.Inspector    = (*owned)(nil)
	_ driver.Waiter       = (*owned)(nil)
	_ driver.Lister       = (*owned)(nil)
)

func (o *owned) Close() error {
	err := o.Backend.Close()
	o.once.Do(func() {
		if cerr := o.closeClient(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	})
	return err
}

func (o *owned) NotifyLoss(ctx context.Context, key, owner string) <-chan struct{} {
	if n, ok := o.Backend.(driver.LossNotifier); ok {
		return n.NotifyLoss(ctx, key, owner)
	}
	return nil
}

func (o *owned) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if in, ok := o.Backend.(driver.Inspector); ok {
		return in.Inspect(ctx, key)
	}
	return driver.Holder{}, false, errors.ErrUnsupported
}

func (o *owned) WaitFree(ctx context.Context, key string) error {
	if w, ok := o.Backend.(driver.Waiter); ok {
		return w.WaitFree(ctx, key)
	}
	return errors.ErrUnsupported
}

func (o *owned) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	if l, ok := o.Backend.(driver.Lister); ok {
		return l.List(ctx, prefix, fn)
	}
	return errors.ErrUnsupported
}
