package dynamolock

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names of package once's completion record, kept in the item of
// the record's key beside (and independent of) the lock's attributes.
const (
	attrOnceFence   = "once_fence"      // N: raised by Begin, never lowered while the record lives
	attrOnceDone    = "once_done"       // N: the token of the run that completed the key
	attrOnceExpires = "once_expires_ms" // N: when fence and record are forgotten (ms, this client's clock); absent: kept
)

// The expressions of the records. Begin succeeds when the key has no
// fence, when its record has expired, or when it has no completion and a
// smaller fence; it then sets the fence and clears what an expired record
// left. Complete succeeds only for the run that holds the fence, on a key
// not yet complete and not expired.
const (
	onceBeginCondition = "attribute_not_exists(" + attrOnceFence + ") OR " + attrOnceExpires + " <= :now OR (" +
		"attribute_not_exists(" + attrOnceDone + ") AND " + attrOnceFence + " < :t)"
	onceBeginKeep       = "SET " + attrOnceFence + " = :t REMOVE " + attrOnceDone + ", " + attrOnceExpires
	onceBeginExpire     = "SET " + attrOnceFence + " = :t, " + attrOnceExpires + " = :x REMOVE " + attrOnceDone
	onceCompleteCond    = attrOnceFence + " = :t AND attribute_not_exists(" + attrOnceDone + ") AND (attribute_not_exists(" + attrOnceExpires + ") OR " + attrOnceExpires + " > :now)"
	onceCompleteKeep    = "SET " + attrOnceDone + " = :t REMOVE " + attrOnceExpires
	onceCompleteExpire  = "SET " + attrOnceDone + " = :t, " + attrOnceExpires + " = :x"
	onceRecordProjected = attrOnceDone + ", " + attrOnceExpires
)

// Records keeps the completion records and fences of package once in the
// lock table: in the item of the record's key, in attributes of their own,
// so a record and a lock of the same key do not interfere. It implements
// once.Store; each method is one request (Begin: two when its condition
// fails, to read why). Retention is judged by this client's clock, like a
// lock's expiry, and an expired record is forgotten the next time its key
// is used (the item itself stays, see the package documentation). Records
// are safe for concurrent use and need no Close.
type Records struct {
	b *Backend
}

// NewRecords returns the completion records of package once, kept through
// client in the table and under the key prefix of opts (Lock is ignored).
// It returns [lock.ErrNilDatabaseClient] for a nil client.
func NewRecords(client Client, opts *Options) (*Records, error) {
	b, err := NewBackend(client, opts)
	if err != nil {
		return nil, err
	}
	return &Records{b: b}, nil
}

// Begin implements once.Store.Begin.
func (r *Records) Begin(ctx context.Context, key string, token uint64, retention time.Duration) (bool, uint64, error) {
	now := r.b.now().UnixMilli()
	vals := map[string]types.AttributeValue{":t": unum(token), ":now": num(now)}
	update := onceBeginKeep
	if retention > 0 {
		update = onceBeginExpire
		vals[":x"] = num(now + millis(retention))
	}
	cond := onceBeginCondition
	_, ok, err := r.b.write(ctx, "once begin", key, &update, &cond, vals, types.ReturnValueNone)
	if err != nil || ok {
		return false, 0, err
	}
	// Refused: complete, or fenced by a later run already. Which?
	return r.Done(ctx, key)
}

// Complete implements once.Store.Complete.
func (r *Records) Complete(ctx context.Context, key string, token uint64, retention time.Duration) (bool, error) {
	now := r.b.now().UnixMilli()
	vals := map[string]types.AttributeValue{":t": unum(token), ":now": num(now)}
	update := onceCompleteKeep
	if retention > 0 {
		update = onceCompleteExpire
		vals[":x"] = num(now + millis(retention))
	}
	cond := onceCompleteCond
	_, ok, err := r.b.write(ctx, "once complete", key, &update, &cond, vals, types.ReturnValueNone)
	return ok, err
}

// Done implements once.Store.Done with a strongly consistent read.
func (r *Records) Done(ctx context.Context, key string) (bool, uint64, error) {
	proj := onceRecordProjected
	out, err := r.b.c.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:            &r.b.table,
		Key:                  r.b.itemKey(key),
		ConsistentRead:       &r.b.expr.consistent,
		ProjectionExpression: &proj,
	})
	if err != nil {
		return false, 0, storeErr(ctx, "once done", err)
	}
	if _, ok := out.Item[attrOnceDone]; !ok {
		return false, 0, nil
	}
	if _, ok := out.Item[attrOnceExpires]; ok {
		exp, err := intAttr(out.Item, attrOnceExpires)
		if err != nil {
			return false, 0, storeErr(ctx, "once done", err)
		}
		if exp <= r.b.now().UnixMilli() {
			return false, 0, nil
		}
	}
	by, err := uintAttr(out.Item, attrOnceDone)
	if err != nil {
		return false, 0, storeErr(ctx, "once done", err)
	}
	return true, by, nil
}

func unum(n uint64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(n, 10)}
}
