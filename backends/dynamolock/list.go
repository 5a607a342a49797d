package dynamolock

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dlockgo/dlock/lock/driver"
)

// List implements [driver.Lister] with a strongly consistent Scan of the
// whole table, page by page, keeping the items under the store's
// KeyPrefix whose lock key starts with prefix and that are held (an owner,
// an expiry after this client's clock). A Scan reads every item of the
// table, free ones included — one per key ever locked, since the fencing
// counters stay — and costs read capacity accordingly: it is for
// operators' tools, not for hot paths.
func (b *Backend) List(ctx context.Context, prefix string, fn func(key string, h driver.Holder) bool) error {
	want := b.prefix + prefix
	in := &dynamodb.ScanInput{
		TableName:            &b.table,
		ConsistentRead:       &b.expr.consistent,
		FilterExpression:     ptr("attribute_exists(" + attrOwner + ")"),
		ProjectionExpression: ptr(attrKey + ", " + holderProjection),
	}
	for {
		out, err := b.c.Scan(ctx, in)
		if err != nil {
			return storeErr(ctx, "list", err)
		}
		now := b.now()
		for _, item := range out.Items {
			kv, ok := item[attrKey].(*types.AttributeValueMemberB)
			if !ok || !strings.HasPrefix(string(kv.Value), want) {
				continue
			}
			h, held, err := holder(item, now)
			if err != nil {
				return err
			}
			if held && !fn(string(kv.Value[len(b.prefix):]), h) {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}
