package etcdlock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/dlockgo/dlock/internal/testenv"
)

// rpcCounter counts the RPCs a client sends (unary calls and streams, each
// one round trip in dlock's use) by method, and can make the next call of
// a method fail after it reached the server.
type rpcCounter struct {
	mu        sync.Mutex
	calls     map[string]int
	failAfter map[string]error // method suffix → error returned once after the call
	leases    []int64          // IDs of the leases granted through this client
}

func newRPCCounter() *rpcCounter {
	return &rpcCounter{calls: map[string]int{}, failAfter: map[string]error{}}
}

func shortMethod(m string) string { return m[strings.LastIndexByte(m, '/')+1:] }

func (c *rpcCounter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	m := shortMethod(method)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[m]++
	if g, ok := reply.(interface{ GetID() int64 }); ok && m == "LeaseGrant" && err == nil {
		c.leases = append(c.leases, g.GetID())
	}
	if ferr, ok := c.failAfter[m]; ok && err == nil {
		delete(c.failAfter, m)
		return ferr
	}
	return err
}

func (c *rpcCounter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c.mu.Lock()
	c.calls[shortMethod(method)]++
	c.mu.Unlock()
	return streamer(ctx, desc, cc, method, opts...)
}

// take returns the counts since the last take and resets them.
func (c *rpcCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.calls
	c.calls = map[string]int{}
	return m
}

func (c *rpcCounter) failNextAfter(method string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failAfter[method] = err
}

func (c *rpcCounter) grantedLeases() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.leases...)
}

// newClient connects to the etcd endpoints in the variable name (a
// comma-separated host:port list) and closes the client after the test.
func newClient(t testing.TB, name string, counter *rpcCounter) *clientv3.Client {
	t.Helper()
	return dial(t, strings.Split(testenv.URL(t, name), ","), counter)
}

func dial(t testing.TB, endpoints []string, counter *rpcCounter) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if counter != nil {
		cfg.DialOptions = []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(counter.unary),
			grpc.WithChainStreamInterceptor(counter.stream),
		}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
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

// eventually polls cond every 20 ms until it holds or d has passed.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sleepCtx waits for d or until ctx ends (a pause between attempts, not
// synchronisation).
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
