package dynamolock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// testTable is the table the tests share; keys are random, so runs do not
// meet.
const testTable = "dlock_test"

// dial returns a DynamoDB client of endpoint (http://host:port) with
// dummy credentials (dynalite checks that requests are signed, not by
// whom) and an HTTP transport of its own, whose idle connections are
// closed when the test ends.
func dial(t testing.TB, endpoint string, opt func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	o := dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("dlock", "dlock", ""),
		HTTPClient:   &http.Client{Transport: tr},
	}
	if opt != nil {
		opt(&o)
	}
	return dynamodb.New(o)
}

// newClient connects to the dynalite of scripts/services.sh and makes sure
// the test table exists.
func newClient(t testing.TB) *dynamodb.Client {
	t.Helper()
	c := dial(t, testenv.URL(t, testenv.DynamoDB), nil)
	if err := dynamolock.CreateTable(ctxT(t), c, testTable, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func newBackend(t testing.TB, c dynamolock.Client, opts *dynamolock.Options) *dynamolock.Backend {
	t.Helper()
	if opts == nil {
		opts = &dynamolock.Options{}
	}
	if opts.Table == "" {
		opts.Table = testTable
	}
	b, err := dynamolock.NewBackend(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func randomKey(t testing.TB) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return t.Name() + "/" + hex.EncodeToString(b[:])
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// requestCounter is an HTTP transport that counts the requests a client
// sends, by DynamoDB operation (the X-Amz-Target header).
type requestCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	ops  map[string]int
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndexByte(op, '.')+1:]
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

// take returns the counts since the last take and resets them.
func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.ops
	c.ops = map[string]int{}
	return m
}
