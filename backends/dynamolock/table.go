package dynamolock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dlockgo/dlock/lock"
)

// TableClient is the part of a [dynamodb.Client] that [CreateTable] uses.
// *dynamodb.Client satisfies it.
type TableClient interface {
	// CreateTable creates the lock table.
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	// DescribeTable tells whether the table is ACTIVE, and its key schema.
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// TableOptions configure [CreateTable]. The zero value, and nil, mean an
// on-demand (PAY_PER_REQUEST) table.
type TableOptions struct {
	// ReadCapacity and WriteCapacity, when both are positive, make a
	// table with provisioned throughput instead of an on-demand one.
	// Every acquire, refresh and release is one write; Inspect and Ping
	// are one strongly consistent read.
	ReadCapacity, WriteCapacity int64
}

// CreateTable creates the lock table named table — partition key lock_key,
// of type binary, no sort key — and waits until it is ACTIVE or ctx ends.
// A table of that name that exists already is fine when its key schema is
// the lock table's (CreateTable then only waits for it to be ACTIVE); one
// with another key schema is an error; a nil client is
// [lock.ErrNilDatabaseClient]. Creating a table is an
// administrative act: run it once at deployment, or from a program with
// the right to create tables, not on every start of every replica.
//
// Do not enable DynamoDB's Time to Live on the table: items hold the
// fencing counters, and an item deleted by it would make the next token
// of its key start again from 1.
func CreateTable(ctx context.Context, client TableClient, table string, opts *TableOptions) error {
	if c, ok := client.(*dynamodb.Client); client == nil || ok && c == nil {
		return lock.ErrNilDatabaseClient
	}
	if err := CheckTableName(table); err != nil {
		return err
	}
	in := &dynamodb.CreateTableInput{
		TableName: &table,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: ptr(attrKey), AttributeType: types.ScalarAttributeTypeB},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: ptr(attrKey), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	}
	if opts != nil && opts.ReadCapacity > 0 && opts.WriteCapacity > 0 {
		in.BillingMode = types.BillingModeProvisioned
		in.ProvisionedThroughput = &types.ProvisionedThroughput{
			ReadCapacityUnits:  &opts.ReadCapacity,
			WriteCapacityUnits: &opts.WriteCapacity,
		}
	}
	_, err := client.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return storeErr(ctx, "create table "+table, err)
	}
	return waitActive(ctx, client, table)
}

// waitActive polls DescribeTable until table is ACTIVE, checking its key
// schema on the way, with a delay that doubles from 20ms to 1s.
func waitActive(ctx context.Context, client TableClient, table string) error {
	delay := 20 * time.Millisecond
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table})
		var missing *types.ResourceNotFoundException
		switch {
		case errors.As(err, &missing):
			// Not visible yet, or deleted meanwhile: keep waiting.
		case err != nil:
			return storeErr(ctx, "describe table "+table, err)
		case out.Table == nil:
			return fmt.Errorf("dynamolock: describe table %s: no description in the answer", table)
		default:
			if err := checkSchema(out.Table); err != nil {
				return fmt.Errorf("dynamolock: table %s: %w", table, err)
			}
			if out.Table.TableStatus == types.TableStatusActive {
				return nil
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("dynamolock: waiting for table %s to become ACTIVE: %w", table, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// checkSchema reports whether d describes a lock table.
func checkSchema(d *types.TableDescription) error {
	if len(d.KeySchema) != 1 || d.KeySchema[0].KeyType != types.KeyTypeHash ||
		d.KeySchema[0].AttributeName == nil || *d.KeySchema[0].AttributeName != attrKey {
		return fmt.Errorf("its key schema is not the lock table's (partition key %s of type B, no sort key)", attrKey)
	}
	for _, a := range d.AttributeDefinitions {
		if a.AttributeName != nil && *a.AttributeName == attrKey && a.AttributeType != types.ScalarAttributeTypeB {
			return fmt.Errorf("its partition key %s has type %s, want B", attrKey, a.AttributeType)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
