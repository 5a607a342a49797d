package redislock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlockgo/dlock/lock"
)

var (
	//go:embed records_begin.lua
	recordsBeginSrc string
	//go:embed records_complete.lua
	recordsCompleteSrc string
	//go:embed records_done.lua
	recordsDoneSrc string
)

// Records keeps the completion records and fences of package once in
// Redis: one hash per key, <prefix>{k'}:once (see the package
// documentation for k'), with the fence and the token of the completed
// run. It implements once.Store; each method is one script, atomic on the
// server. It is safe for concurrent use.
//
// Records make their calls directly: a context's deadline ends a call only
// on a client built with ContextTimeoutEnabled, otherwise the client's own
// timeouts bound it. Records need no Close.
type Records struct {
	c        Client
	prefix   string
	begin    script
	complete script
	done     script
}

// NewRecords returns the completion records of package once, kept through
// client under [Options.KeyPrefix] (the other options are ignored). It
// returns [lock.ErrNilDatabaseClient] for a nil client.
func NewRecords(client Client, opts *Options) (*Records, error) {
	if isNil(client) {
		return nil, lock.ErrNilDatabaseClient
	}
	prefix := DefaultKeyPrefix
	if opts != nil && opts.KeyPrefix != "" {
		prefix = opts.KeyPrefix
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	return &Records{
		c:        client,
		prefix:   prefix,
		begin:    newScript(recordsBeginSrc),
		complete: newScript(recordsCompleteSrc),
		done:     newScript(recordsDoneSrc),
	}, nil
}

const recordSuffix = ":once"

func (r *Records) key(key string) []string {
	lk, _ := keys(r.prefix, key)
	return []string{lk + recordSuffix}
}

// retentionArg is retention in whole ms rounded up, "0" for none.
func retentionArg(retention time.Duration) string {
	if retention <= 0 {
		return "0"
	}
	return strconv.FormatInt(millis(retention), 10)
}

func (r *Records) run(ctx context.Context, s *script, keys []string, args ...any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := r.c.EvalSha(ctx, s.sha, keys, args...).Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		v, err = r.c.Eval(ctx, s.src, keys, args...).Result()
	}
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return v, err
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return nil, fmt.Errorf("redislock: %w (%w)", err, ctx.Err())
	default:
		return nil, fmt.Errorf("redislock: %w", err)
	}
}

// Begin implements once.Store: it reports key's completion record or, when
// there is none, raises key's fence to token. Retention is kept in whole
// milliseconds, rounded up.
func (r *Records) Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error) {
	v, err := r.run(ctx, &r.begin, r.key(key), strconv.FormatUint(token, 10), retentionArg(retention))
	if err != nil {
		return false, 0, err
	}
	a, _ := v.([]any)
	if len(a) != 2 {
		return false, 0, fmt.Errorf("redislock: records script returned %v", v)
	}
	if a[0] != int64(1) {
		return false, 0, nil
	}
	by, err := parseToken(a[1])
	return err == nil, by, err
}

// Complete implements once.Store: it records the completion of the run
// with token if key is not complete and its fence is still token.
func (r *Records) Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error) {
	v, err := r.run(ctx, &r.complete, r.key(key), strconv.FormatUint(token, 10), retentionArg(retention))
	if err != nil {
		return false, err
	}
	return v == int64(1), nil
}

// Done implements once.Store: it reports key's completion record.
func (r *Records) Done(ctx context.Context, key string) (bool, uint64, error) {
	v, err := r.run(ctx, &r.done, r.key(key))
	if errors.Is(err, redis.Nil) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	by, err := parseToken(v)
	return err == nil, by, err
}

func parseToken(v any) (uint64, error) {
	s, _ := v.(string)
	tok, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redislock: bad token %v in a completion record", v)
	}
	return tok, nil
}
