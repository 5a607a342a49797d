package dynamolock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dlockgo/dlock/internal/storeutil"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Client is the part of a [dynamodb.Client] that the store uses: the
// conditional writes of acquire, refresh and release, the reads of
// Inspect and Ping, and the Scan of List. *dynamodb.Client satisfies it.
type Client interface {
	// UpdateItem makes the conditional writes of acquire, refresh and
	// release.
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	// GetItem reads a lock for Inspect and Ping.
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	// Scan reads the table for List.
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// DefaultTable is the table used when [Options.Table] is empty.
const DefaultTable = "dlock"

// MaxKeyPrefixLength is the longest [Options.KeyPrefix], in bytes: a
// DynamoDB partition key holds at most 2048 bytes, and a lock key up to
// [lock.MaxKeyLength].
const MaxKeyPrefixLength = 2048 - lock.MaxKeyLength

// Attribute names of a lock's item. None is a DynamoDB reserved word, so
// expressions name them directly.
const (
	attrKey     = "lock_key"        // B: KeyPrefix + the lock key's bytes (the partition key)
	attrOwner   = "lock_owner"      // S: the holder's owner string; absent when free
	attrExpires = "lock_expires_ms" // N: expiry in ms since the Unix epoch, by the holder's clock
	attrFence   = "lock_fence"      // N: the last fencing token handed out; never removed
)

// The expressions of the three conditional writes.
const (
	acquireUpdate    = "SET " + attrOwner + " = :o, " + attrExpires + " = :e ADD " + attrFence + " :one"
	acquireCondition = "attribute_not_exists(" + attrOwner + ") OR " + attrExpires + " <= :now"
	refreshUpdate    = "SET " + attrExpires + " = :e"
	refreshCondition = attrOwner + " = :o AND " + attrExpires + " > :now"
	releaseUpdate    = "REMOVE " + attrOwner + ", " + attrExpires
	releaseCondition = attrOwner + " = :o"
	holderProjection = attrOwner + ", " + attrExpires + ", " + attrFence
)

// Options configure the store. The zero value, and nil, mean the defaults.
type Options struct {
	// Table is the lock table, created beforehand (see [CreateTable]).
	// Default: [DefaultTable].
	Table string
	// KeyPrefix is put before every lock key in the table's partition
	// key, so that several applications can share a table. At most
	// [MaxKeyPrefixLength] bytes. Default: none.
	KeyPrefix string
	// Now is the clock that expiry is judged by: the store writes the
	// expiry of a lock as Now()+TTL and treats a lock as expired once
	// Now() has passed it (see the package documentation on clocks).
	// It is called concurrently. Default: time.Now.
	Now func() time.Time
	// Lock configures the [lock.Locker] that [New] returns (identity,
	// clean-up timeout). [NewBackend] ignores it.
	Lock lock.Options
}

// New returns a [lock.Locker] that keeps its locks in the DynamoDB table
// of opts through client. The table must exist ([CreateTable] makes it).
// The Locker does not own client.
//
// New returns [lock.ErrNilDatabaseClient] for a nil client and an error for
// invalid options.
func New(client Client, opts *Options) (lock.Locker, error) {
	b, err := NewBackend(client, opts)
	if err != nil {
		return nil, err
	}
	var lo *lock.Options
	if opts != nil {
		lo = &opts.Lock
	}
	return storeutil.NewLocker(b, lo)
}

// Backend is the DynamoDB store as a [driver.Backend]; most users want
// [New] instead. It also implements [driver.Inspector] and
// [driver.Lister]. A Backend is safe for concurrent use.
type Backend struct {
	c      Client
	table  string
	prefix string
	now    func() time.Time
	// expr holds the expressions, so that a call can point at them
	// without allocating.
	expr expressions
}

type expressions struct {
	acquireUpdate, acquireCondition string
	refreshUpdate, refreshCondition string
	releaseUpdate, releaseCondition string
	holderProjection, ping          string
	consistent                      bool
}

var (
	_ driver.Backend   = (*Backend)(nil)
	_ driver.Inspector = (*Backend)(nil)
	_ driver.Lister    = (*Backend)(nil)
)

// NewBackend returns the DynamoDB store as a [driver.Backend], for
// [lock.New] and for tests. Use [New] unless you need the Backend itself.
// [Options.Lock] is ignored.
//
// NewBackend returns [lock.ErrNilDatabaseClient] for a nil client and an
// error for invalid options.
func NewBackend(client Client, opts *Options) (*Backend, error) {
	if isNil(client) {
		return nil, lock.ErrNilDatabaseClient
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if err := CheckTableName(o.Table); err != nil {
		return nil, err
	}
	if len(o.KeyPrefix) > MaxKeyPrefixLength {
		return nil, fmt.Errorf("dynamolock: KeyPrefix is %d bytes, the limit is %d", len(o.KeyPrefix), MaxKeyPrefixLength)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Backend{c: client, table: o.Table, prefix: o.KeyPrefix, now: o.Now, expr: expressions{
		acquireUpdate: acquireUpdate, acquireCondition: acquireCondition,
		refreshUpdate: refreshUpdate, refreshCondition: refreshCondition,
		releaseUpdate: releaseUpdate, releaseCondition: releaseCondition,
		holderProjection: holderProjection, ping: attrFence,
		consistent: true,
	}}, nil
}

func isNil(c Client) bool {
	switch c := c.(type) {
	case nil:
		return true
	case *dynamodb.Client:
		return c == nil
	}
	return false
}

// CheckTableName reports whether name is a valid DynamoDB table name: 3 to
// 255 characters among a-z, A-Z, 0-9, '_', '-' and '.'.
func CheckTableName(name string) error {
	if len(name) < 3 || len(name) > 255 {
		return fmt.Errorf("dynamolock: table name %q: want 3 to 255 characters", name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("dynamolock: table name %q: only a-z, A-Z, 0-9, '_', '-' and '.' are allowed", name)
		}
	}
	return nil
}

// oneAttempt switches the SDK's retryer off for one call. A conditional
// write whose answer was lost and that the SDK then retried would fail
// its own condition (the first attempt already applied it) and be
// reported as contention or as not held. One attempt per call keeps an
// unknown outcome an error, which package lock treats as ambiguous; waiting
// and retrying is package retry's job.
func oneAttempt(o *dynamodb.Options) { o.RetryMaxAttempts = 1 }

// millis converts d to whole milliseconds, rounding up: a TTL is never
// granted shorter than asked.
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

var one types.AttributeValue = &types.AttributeValueMemberN{Value: "1"}

// itemKey is the primary key of key's item.
func (b *Backend) itemKey(key string) map[string]types.AttributeValue {
	v := make([]byte, 0, len(b.prefix)+len(key))
	v = append(append(v, b.prefix...), key...)
	return map[string]types.AttributeValue{attrKey: &types.AttributeValueMemberB{Value: v}}
}

// write makes one conditional UpdateItem of key's item, in one attempt
// (see oneAttempt). ok is false, with a nil error, when the condition
// failed; a failed call is an error.
func (b *Backend) write(ctx context.Context, op, key string, update, cond *string,
	vals map[string]types.AttributeValue, rv types.ReturnValue,
) (attrs map[string]types.AttributeValue, ok bool, err error) {
	out, err := b.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &b.table,
		Key:                       b.itemKey(key),
		UpdateExpression:          update,
		ConditionExpression:       cond,
		ExpressionAttributeValues: vals,
		ReturnValues:              rv,
	}, oneAttempt)
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return nil, false, nil
	case err != nil:
		return nil, false, storeErr(ctx, op, err)
	}
	return out.Attributes, true, nil
}

// TryAcquire implements [driver.Backend] with one conditional UpdateItem:
// if the item has no owner or its expiry has passed by this client's
// clock, set owner and expiry and add 1 to the fencing counter, whose new
// value comes back in the same answer. TTLs are whole milliseconds,
// rounded up.
func (b *Backend) TryAcquire(ctx context.Context, key, owner string, ttl time.Duration) (driver.Grant, bool, error) {
	ms := millis(ttl)
	now := b.now().UnixMilli()
	attrs, ok, err := b.write(ctx, "acquire", key, &b.expr.acquireUpdate, &b.expr.acquireCondition,
		map[string]types.AttributeValue{
			":o":   &types.AttributeValueMemberS{Value: owner},
			":e":   num(now + ms),
			":now": num(now),
			":one": one,
		}, types.ReturnValueUpdatedNew)
	if !ok || err != nil {
		return driver.Grant{}, false, err
	}
	tok, err := uintAttr(attrs, attrFence)
	if err != nil || tok == 0 {
		// The write was applied: the Locker releases it, as after any
		// error.
		return driver.Grant{}, false, fmt.Errorf("dynamolock: acquire: the answer carries no valid fencing token (%v)", err)
	}
	return driver.Grant{Token: tok, TTL: time.Duration(ms) * time.Millisecond}, true, nil
}

// Refresh implements [driver.Backend] with one conditional UpdateItem:
// set a new expiry if owner holds the item and its expiry has not passed.
func (b *Backend) Refresh(ctx context.Context, key, owner string, ttl time.Duration) (time.Duration, bool, error) {
	ms := millis(ttl)
	now := b.now().UnixMilli()
	_, ok, err := b.write(ctx, "refresh", key, &b.expr.refreshUpdate, &b.expr.refreshCondition,
		map[string]types.AttributeValue{
			":o":   &types.AttributeValueMemberS{Value: owner},
			":e":   num(now + ms),
			":now": num(now),
		}, types.ReturnValueNone)
	if !ok || err != nil {
		return 0, false, err
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// Release implements [driver.Backend] with one conditional UpdateItem:
// remove owner and expiry if owner holds the item. The fencing counter
// stays. It reports ok == false when owner was not the holder, and also
// when owner was still recorded but its expiry had passed (nobody had
// taken the key yet, but the lock was no longer guaranteed).
func (b *Backend) Release(ctx context.Context, key, owner string) (bool, error) {
	now := b.now().UnixMilli()
	attrs, ok, err := b.write(ctx, "release", key, &b.expr.releaseUpdate, &b.expr.releaseCondition,
		map[string]types.AttributeValue{":o": &types.AttributeValueMemberS{Value: owner}},
		types.ReturnValueUpdatedOld)
	if !ok || err != nil {
		return false, err
	}
	exp, err := intAttr(attrs, attrExpires)
	if err != nil {
		return false, fmt.Errorf("dynamolock: release: %w", err)
	}
	return exp > now, nil
}

// Inspect implements [driver.Inspector]: a strongly consistent GetItem of
// key's item. A holder whose expiry has passed by this client's clock is
// reported as no holder.
func (b *Backend) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	out, err := b.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:            &b.table,
		Key:                  b.itemKey(key),
		ConsistentRead:       &b.expr.consistent,
		ProjectionExpression: &b.expr.holderProjection,
	})
	if err != nil {
		return driver.Holder{}, false, storeErr(ctx, "inspect", err)
	}
	return holder(out.Item, b.now())
}

// holder reads a lock item's holder; ok is false when the item has no
// owner or its expiry is not after now.
func holder(item map[string]types.AttributeValue, now time.Time) (driver.Holder, bool, error) {
	ov, ok := item[attrOwner].(*types.AttributeValueMemberS)
	if !ok {
		return driver.Holder{}, false, nil
	}
	exp, err := intAttr(item, attrExpires)
	if err != nil {
		return driver.Holder{}, false, fmt.Errorf("dynamolock: inspect: %w", err)
	}
	left := time.Duration(exp-now.UnixMilli()) * time.Millisecond
	if left <= 0 {
		return driver.Holder{}, false, nil
	}
	tok, err := uintAttr(item, attrFence)
	if err != nil {
		return driver.Holder{}, false, fmt.Errorf("dynamolock: inspect: %w", err)
	}
	return driver.Holder{Owner: ov.Value, Token: tok, TTL: left}, true, nil
}

// Ping implements [driver.Backend] with a GetItem in the lock table, which
// fails when the table does not exist.
func (b *Backend) Ping(ctx context.Context) error {
	_, err := b.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:            &b.table,
		Key:                  b.itemKey("\x00dlock-ping"),
		ProjectionExpression: &b.expr.ping,
	})
	return storeErr(ctx, "ping", err)
}

// Close implements [driver.Backend]. The Backend holds nothing but the
// client, which it does not own: Close leaves it usable.
func (b *Backend) Close() error { return nil }

func intAttr(item map[string]types.AttributeValue, name string) (int64, error) {
	return parseAttr(item, name, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

func uintAttr(item map[string]types.AttributeValue, name string) (uint64, error) {
	return parseAttr(item, name, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
}

// parseAttr parses the number attribute name of item.
func parseAttr[T any](item map[string]types.AttributeValue, name string, parse func(string) (T, error)) (T, error) {
	var zero T
	v, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return zero, fmt.Errorf("attribute %s is missing or not a number", name)
	}
	n, err := parse(v.Value)
	if err != nil {
		return zero, fmt.Errorf("attribute %s: %w", name, err)
	}
	return n, nil
}

// storeErr wraps a client error, keeping ctx's error in the chain.
func storeErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(err, cerr)
	}
	return fmt.Errorf("dynamolock: %s: %w", op, err)
}
