package bench

// DynamoDB (against dynalite, a DynamoDB-compatible server on Node.js):
// dynamolock against the raw protocol floor, the same two conditional
// UpdateItem calls issued directly with the SDK — acquire "if free or
// expired: set owner and expiry, ADD 1 to the fence counter, return it",
// release "if owner matches: REMOVE owner and expiry".
//
//	go test -run '^$' -bench Dynamo -benchmem
//
// BenchmarkDynamoInterleaved runs both contenders in each iteration, in a
// random order, and reports each one's median per cycle and dynamolock's
// ratio to the floor. dynalite answers in milliseconds, so the figures say
// what dlock adds on the client side (validation, owner tokens, the
// one-attempt option) next to an HTTP round trip, not how fast DynamoDB is.

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
)

const (
	dynamoTable = "dlock_bench"
	dynamoTTL   = 30 * time.Second
)

type dynamoContender struct {
	name  string
	cycle func(ctx context.Context, key string) error
}

func dynamoSetup(b *testing.B) []dynamoContender {
	b.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	b.Cleanup(tr.CloseIdleConnections)
	c := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(testenv.URL(b, testenv.DynamoDB)),
		Credentials:  credentials.NewStaticCredentialsProvider("dlock", "dlock", ""),
		HTTPClient:   &http.Client{Transport: tr},
	})
	ctx := context.Background()
	if err := dynamolock.CreateTable(ctx, c, dynamoTable, nil); err != nil {
		b.Fatal(err)
	}
	locker, err := dynamolock.New(c, &dynamolock.Options{Table: dynamoTable, KeyPrefix: "dlock/"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = locker.Close() })

	table := aws.String(dynamoTable)
	acqUpd := aws.String("SET lock_owner = :o, lock_expires_ms = :e ADD lock_fence :one")
	acqCond := aws.String("attribute_not_exists(lock_owner) OR lock_expires_ms <= :now")
	relUpd := aws.String("REMOVE lock_owner, lock_expires_ms")
	relCond := aws.String("lock_owner = :o")
	owner := &types.AttributeValueMemberS{Value: "0123456789abcdef0123456789abcdef"}
	one := &types.AttributeValueMemberN{Value: "1"}
	raw := func(ctx context.Context, key string) error {
		k := map[string]types.AttributeValue{"lock_key": &types.AttributeValueMemberB{Value: []byte("raw/" + key)}}
		now := time.Now().UnixMilli()
		out, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: table, Key: k, UpdateExpression: acqUpd, ConditionExpression: acqCond,
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":o":   owner,
				":e":   &types.AttributeValueMemberN{Value: strconv.FormatInt(now+dynamoTTL.Milliseconds(), 10)},
				":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(now, 10)},
				":one": one,
			},
			ReturnValues: types.ReturnValueUpdatedNew,
		})
		if err != nil {
			return err
		}
		if _, ok := out.Attributes["lock_fence"].(*types.AttributeValueMemberN); !ok {
			return errors.New("no fence in the answer")
		}
		_, err = c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: table, Key: k, UpdateExpression: relUpd, ConditionExpression: relCond,
			ExpressionAttributeValues: map[string]types.AttributeValue{":o": owner},
		})
		return err
	}
	return []dynamoContender{
		{"dynamolock", func(ctx context.Context, key string) error {
			lk, err := locker.Acquire(ctx, key, dynamoTTL)
			if err != nil {
				return err
			}
			return lk.Release(ctx)
		}},
		{"raw-floor", raw},
	}
}

func dynamoRunID() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// BenchmarkDynamo measures each contender on its own (for -benchmem), on
// one key.
func BenchmarkDynamo(b *testing.B) {
	run := dynamoRunID()
	for _, c := range dynamoSetup(b) {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			key := "bench/" + run + "/one"
			b.ReportAllocs()
			for b.Loop() {
				if err := c.cycle(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDynamoInterleaved reports the median ns per acquire+release
// cycle of each contender (<name>-p50-ns) and dynamolock/raw-floor, on one
// key (the item exists after the first cycle) and on a new key every cycle
// (every acquisition creates an item).
func BenchmarkDynamoInterleaved(b *testing.B) {
	cs := dynamoSetup(b)
	ctx := context.Background()
	run := dynamoRunID()
	rng := rand.New(rand.NewPCG(1, 2))
	measure := func(b *testing.B, key func(i int) string) {
		times := make([][]time.Duration, len(cs))
		for i := range b.N {
			k := key(i)
			for _, j := range rng.Perm(len(cs)) {
				start := time.Now()
				if err := cs[j].cycle(ctx, k); err != nil {
					if errors.Is(err, lock.ErrLockNotAcquired) {
						err = errors.New("an uncontended key was refused")
					}
					b.Fatalf("%s: %v", cs[j].name, err)
				}
				times[j] = append(times[j], time.Since(start))
			}
		}
		p50 := make([]float64, len(cs))
		for j, c := range cs {
			slices.Sort(times[j])
			p50[j] = float64(times[j][len(times[j])/2].Nanoseconds())
			b.ReportMetric(p50[j], c.name+"-p50-ns")
		}
		b.ReportMetric(p50[0]/p50[1], "dynamolock/raw-floor")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("OneKey", func(b *testing.B) {
		key := "bench/" + run + "/ione/" + strconv.Itoa(b.N)
		measure(b, func(int) string { return key })
	})
	b.Run("DistinctKeys", func(b *testing.B) {
		base := "bench/" + run + "/idistinct/" + strconv.Itoa(b.N) + "/"
		measure(b, func(i int) string { return base + strconv.Itoa(i) })
	})
}
