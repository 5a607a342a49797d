package dynamolock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/lock"
)

// A client made from the standard AWS configuration, for instance with
// github.com/aws/aws-sdk-go-v2/config:
//
//	cfg, err := config.LoadDefaultConfig(ctx)
//	ddb := dynamodb.NewFromConfig(cfg)
func ExampleNew() {
	var ddb *dynamodb.Client // dynamodb.NewFromConfig(cfg)
	ctx := context.Background()

	// Once, at deployment: an on-demand table with the lock table's key.
	if err := dynamolock.CreateTable(ctx, ddb, "dlock", nil); err != nil {
		log.Fatal(err)
	}

	locker, err := dynamolock.New(ddb, &dynamolock.Options{
		Table: "dlock",
		Lock:  lock.Options{Identity: "billing-1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	lk, err := locker.Acquire(ctx, "invoice/42", 30*time.Second)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		fmt.Println("someone else is on it")
		return
	}
	if err != nil {
		log.Fatal(err) // DynamoDB failed or timed out: not the same as "busy"
	}
	defer lk.Release(ctx)
	// The token grows with every holder of the key, whatever the clocks
	// say: pass it with the writes the lock protects.
	fmt.Println("fencing token for the writes:", lk.Token())
}

func ExampleNew_hold() {
	var ddb *dynamodb.Client                // dynamodb.NewFromConfig(cfg)
	locker, err := dynamolock.New(ddb, nil) // table "dlock"
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	ctx := context.Background()
	lk, err := locker.Acquire(ctx, "nightly-report", 30*time.Second)
	if err != nil {
		log.Fatal(err) // lock.ErrLockNotAcquired when busy
	}
	// Expiry is judged by the clients' clocks: keep the hold's margin at
	// least twice the worst clock skew between them (10s here covers 5s).
	held, stop := lock.Hold(ctx, lk, &lock.HoldOptions{Margin: 10 * time.Second})
	defer stop()
	token, _ := lock.TokenFrom(held)
	fmt.Println("writing with fencing token", token)
}

func ExampleNew_inspect() {
	var ddb *dynamodb.Client // dynamodb.NewFromConfig(cfg)
	locker, err := dynamolock.New(ddb, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer locker.Close()

	h, held, err := locker.(lock.Inspector).Inspect(context.Background(), "invoice/42")
	if err != nil {
		log.Fatal(err)
	}
	if held {
		fmt.Printf("held by %q with token %d for %v more\n", h.Identity, h.Token, h.TTL)
	}
}
