package dynamolock_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

func TestNew_NilClientIsRefused(t *testing.T) {
	for name, c := range map[string]dynamolock.Client{
		"nil interface":        nil,
		"nil *dynamodb.Client": (*dynamodb.Client)(nil),
	} {
		if _, err := dynamolock.New(c, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
			t.Errorf("%s: New = %v, want ErrNilDatabaseClient", name, err)
		}
		if _, err := dynamolock.NewBackend(c, nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
			t.Errorf("%s: NewBackend = %v, want ErrNilDatabaseClient", name, err)
		}
	}
}

func TestNew_BadOptionsAreRefused(t *testing.T) {
	c := dial(t, "http://127.0.0.1:1", nil) // never called
	for name, o := range map[string]dynamolock.Options{
		"short table":    {Table: "ab"},
		"bad table char": {Table: "dlock/locks"},
		"long table":     {Table: strings.Repeat("t", 256)},
		"long prefix":    {KeyPrefix: strings.Repeat("p", dynamolock.MaxKeyPrefixLength+1)},
		"long identity":  {Lock: lock.Options{Identity: strings.Repeat("x", lock.MaxIdentityLength+1)}},
	} {
		if l, err := dynamolock.New(c, &o); err == nil {
			l.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := dynamolock.New(c, &dynamolock.Options{Table: "a.b-c_D9", KeyPrefix: strings.Repeat("p", dynamolock.MaxKeyPrefixLength)}); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

// item reads key's raw item (no prefix).
func item(t *testing.T, c *dynamodb.Client, key string) map[string]types.AttributeValue {
	t.Helper()
	out, err := c.GetItem(ctxT(t), &dynamodb.GetItemInput{
		TableName:      ptr(testTable),
		Key:            map[string]types.AttributeValue{"lock_key": &types.AttributeValueMemberB{Value: []byte(key)}},
		ConsistentRead: ptr(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

func ptr[T any](v T) *T { return &v }

func TestFence_IncreasesAndSurvivesRelease(t *testing.T) {
	c := newClient(t)
	b := newBackend(t, c, nil)
	ctx := ctxT(t)
	key := randomKey(t)
	for want := uint64(1); want <= 5; want++ {
		g, ok, err := b.TryAcquire(ctx, key, "owner", time.Minute)
		if err != nil || !ok {
			t.Fatalf("TryAcquire = %v, %v", ok, err)
		}
		if g.Token != want {
			t.Fatalf("token %d, want %d", g.Token, want)
		}
		if ok, err := b.Release(ctx, key, "owner"); err != nil || !ok {
			t.Fatalf("Release = %v, %v", ok, err)
		}
		it := item(t, c, key)
		if _, has := it["lock_owner"]; has {
			t.Fatalf("owner left after release: %v", it)
		}
		if _, has := it["lock_expires_ms"]; has {
			t.Fatalf("expiry left after release: %v", it)
		}
		if f, _ := it["lock_fence"].(*types.AttributeValueMemberN); f == nil || f.Value != strconv.FormatUint(want, 10) {
			t.Fatalf("fence after release = %v, want %d", it["lock_fence"], want)
		}
	}
}

// clockAt is a clock for Options.Now that reads *t.
func clockAt(t *time.Time) func() time.Time { return func() time.Time { return *t } }

func TestExpiry_ExpiredLockIsTakenOverWithALargerToken(t *testing.T) {
	c := newClient(t)
	now := time.Now()
	a := newBackend(t, c, &dynamolock.Options{Now: clockAt(&now)})
	ctx := ctxT(t)
	key := randomKey(t)
	ga, ok, err := a.TryAcquire(ctx, key, "a", 10*time.Second)
	if err != nil || !ok {
		t.Fatalf("a: TryAcquire = %v, %v", ok, err)
	}
	// b's clock reads 9.999s later: the lock still has 1ms.
	later := now.Add(10*time.Second - time.Millisecond)
	b := newBackend(t, c, &dynamolock.Options{Now: clockAt(&later)})
	if _, ok, err := b.TryAcquire(ctx, key, "b", time.Minute); ok || err != nil {
		t.Fatalf("b before expiry: TryAcquire = %v, %v; want refused", ok, err)
	}
	if _, ok, err := b.Inspect(ctx, key); !ok || err != nil {
		t.Fatalf("b before expiry: Inspect = %v, %v; want held", ok, err)
	}
	later = now.Add(10 * time.Second) // exactly the expiry: expired
	if _, ok, err := b.Inspect(ctx, key); ok || err != nil {
		t.Fatalf("b at expiry: Inspect = %v, %v; want free", ok, err)
	}
	gb, ok, err := b.TryAcquire(ctx, key, "b", time.Minute)
	if err != nil || !ok {
		t.Fatalf("b at expiry: TryAcquire = %v, %v", ok, err)
	}
	if gb.Token <= ga.Token {
		t.Fatalf("token %d after expired holder's %d", gb.Token, ga.Token)
	}
	// The old holder can neither refresh nor release the new holder's lock.
	if _, ok, err := a.Refresh(ctx, key, "a", time.Minute); ok || err != nil {
		t.Fatalf("old holder's Refresh = %v, %v", ok, err)
	}
	if ok, err := a.Release(ctx, key, "a"); ok || err != nil {
		t.Fatalf("old holder's Release = %v, %v", ok, err)
	}
	if h, ok, err := a.Inspect(ctx, key); !ok || err != nil || h.Owner != "b" || h.Token != gb.Token {
		t.Fatalf("Inspect = %+v, %v, %v; want b with token %d", h, ok, err, gb.Token)
	}
}

func TestRelease_AfterExpiryIsNotHeldButFreesTheKey(t *testing.T) {
	c := newClient(t)
	now := time.Now()
	b := newBackend(t, c, &dynamolock.Options{Now: clockAt(&now)})
	ctx := ctxT(t)
	key := randomKey(t)
	if _, ok, err := b.TryAcquire(ctx, key, "a", time.Second); !ok || err != nil {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	now = now.Add(time.Second)
	if _, ok, err := b.Refresh(ctx, key, "a", time.Second); ok || err != nil {
		t.Fatalf("Refresh after expiry = %v, %v; want not held", ok, err)
	}
	if ok, err := b.Release(ctx, key, "a"); ok || err != nil {
		t.Fatalf("Release after expiry = %v, %v; want not held", ok, err)
	}
	if _, has := item(t, c, key)["lock_owner"]; has {
		t.Fatal("the expired owner is still recorded after its release")
	}
}

// TestClockSkew_ShortensOrLengthensTheTTL pins down the documented clock
// assumption: a taker whose clock is ahead of the holder's by d sees the
// lock expire d early.
func TestClockSkew_ShortensOrLengthensTheTTL(t *testing.T) {
	c := newClient(t)
	base := time.Now()
	holderClock, takerClock := base, base.Add(3*time.Second) // taker 3s ahead
	h := newBackend(t, c, &dynamolock.Options{Now: clockAt(&holderClock)})
	tk := newBackend(t, c, &dynamolock.Options{Now: clockAt(&takerClock)})
	ctx := ctxT(t)
	key := randomKey(t)
	if _, ok, err := h.TryAcquire(ctx, key, "h", 10*time.Second); !ok || err != nil {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	takerClock = takerClock.Add(7*time.Second - time.Millisecond) // 7s − 1ms of real time later
	if _, ok, err := tk.TryAcquire(ctx, key, "t", time.Minute); ok || err != nil {
		t.Fatalf("taker at 7s − 1ms: %v, %v; want refused", ok, err)
	}
	takerClock = takerClock.Add(time.Millisecond) // 7s: TTL − skew
	if _, ok, err := tk.TryAcquire(ctx, key, "t", time.Minute); !ok || err != nil {
		t.Fatalf("taker at 7s: %v, %v; want the lock (TTL 10s − 3s of skew)", ok, err)
	}
}

func TestAcquire_ConditionFailureIsContention(t *testing.T) {
	c := newClient(t)
	a, b := newBackend(t, c, nil), newBackend(t, c, nil)
	ctx := ctxT(t)
	key := randomKey(t)
	if _, ok, err := a.TryAcquire(ctx, key, "a", time.Minute); !ok || err != nil {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	if _, ok, err := b.TryAcquire(ctx, key, "b", time.Minute); ok || err != nil {
		t.Fatalf("second TryAcquire = %v, %v; want ok=false, nil error", ok, err)
	}
	if _, ok, err := b.Refresh(ctx, key, "b", time.Minute); ok || err != nil {
		t.Fatalf("Refresh by a non-owner = %v, %v", ok, err)
	}
	if ok, err := b.Release(ctx, key, "b"); ok || err != nil {
		t.Fatalf("Release by a non-owner = %v, %v", ok, err)
	}
	if ok, err := a.Release(ctx, key, "a"); !ok || err != nil {
		t.Fatalf("Release = %v, %v", ok, err)
	}
}

func TestSecondLockerInTheSameProcessIsRefused(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	key := randomKey(t)
	l1, err := dynamolock.New(c, &dynamolock.Options{Table: testTable})
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	l2, err := dynamolock.New(c, &dynamolock.Options{Table: testTable})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	lk, err := l1.Acquire(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Acquire(ctx, key, time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("second Locker: %v, want ErrLockNotAcquired", err)
	}
	if _, err := l1.Acquire(ctx, key, time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("same Locker again: %v, want ErrLockNotAcquired", err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestStoreFailure_IsAnErrorNeverContention(t *testing.T) {
	check := func(t *testing.T, b *dynamolock.Backend, ctx context.Context) {
		t.Helper()
		key := randomKey(t)
		if _, ok, err := b.TryAcquire(ctx, key, "a", time.Minute); err == nil || ok {
			t.Errorf("TryAcquire = %v, %v; want an error", ok, err)
		} else if isNotAcquired(err) {
			t.Errorf("TryAcquire error reads as contention: %v", err)
		}
		if _, _, err := b.Refresh(ctx, key, "a", time.Minute); err == nil {
			t.Error("Refresh: no error")
		}
		if _, err := b.Release(ctx, key, "a"); err == nil {
			t.Error("Release: no error")
		}
		if _, _, err := b.Inspect(ctx, key); err == nil {
			t.Error("Inspect: no error")
		}
		if err := b.Ping(ctx); err == nil {
			t.Error("Ping: no error")
		}
		if err := b.List(ctx, "", func(string, driver.Holder) bool { return true }); err == nil {
			t.Error("List: no error")
		}
	}
	t.Run("ClosedPort", func(t *testing.T) {
		c := dial(t, "http://"+closedPort(t), func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
		check(t, newBackend(t, c, nil), ctxT(t))
	})
	t.Run("NoAnswerBeforeTheDeadline", func(t *testing.T) {
		// A server that accepts connections and never answers: every call
		// ends at ctx's deadline with ctx's error in the chain.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var conns []net.Conn
		go func() {
			defer close(done)
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, conn)
			}
		}()
		defer func() {
			l.Close()
			<-done
			for _, c := range conns {
				c.Close()
			}
		}()
		c := dial(t, "http://"+l.Addr().String(), func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
		b := newBackend(t, c, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, ok, err := b.TryAcquire(ctx, randomKey(t), "a", time.Minute)
		if err == nil || ok || isNotAcquired(err) {
			t.Fatalf("TryAcquire = %v, %v; want a store error", ok, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the error does not keep ctx's: %v", err)
		}
	})
	t.Run("MissingTable", func(t *testing.T) {
		c := newClient(t)
		check(t, newBackend(t, c, &dynamolock.Options{Table: "dlock_no_such_table"}), ctxT(t))
	})
}

func isNotAcquired(err error) bool { return errors.Is(err, lock.ErrLockNotAcquired) }

func TestInspect_ReportsOwnerTokenAndTTL(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	l, err := dynamolock.New(c, &dynamolock.Options{Table: testTable, Lock: lock.Options{Identity: "worker-7"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := randomKey(t) + "\x00\xff"
	in := l.(lock.Inspector)
	if _, ok, err := in.Inspect(ctx, key); ok || err != nil {
		t.Fatalf("free key: Inspect = %v, %v", ok, err)
	}
	lk, err := l.Acquire(ctx, key, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h, ok, err := in.Inspect(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Inspect = %v, %v", ok, err)
	}
	if h.Identity != "worker-7" || h.Token != lk.Token() || h.TTL <= 25*time.Second || h.TTL > 30*time.Second {
		t.Errorf("Inspect = %+v; want worker-7, token %d, TTL about 30s", h, lk.Token())
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := in.Inspect(ctx, key); ok || err != nil {
		t.Fatalf("released key: Inspect = %v, %v", ok, err)
	}
}

func TestList_ReportsHeldKeysUnderThePrefix(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	prefix := randomKey(t) + "/"
	b := newBackend(t, c, &dynamolock.Options{KeyPrefix: prefix})
	other := newBackend(t, c, &dynamolock.Options{KeyPrefix: prefix + "x"}) // a prefix of ours is not a key of ours
	keys := []string{"a/1", "a/2\x00", "b/1"}
	for _, k := range keys {
		if _, ok, err := b.TryAcquire(ctx, k, "o-"+k, time.Minute); !ok || err != nil {
			t.Fatalf("TryAcquire(%q) = %v, %v", k, ok, err)
		}
	}
	if _, ok, err := b.TryAcquire(ctx, "a/free", "o", time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := b.Release(ctx, "a/free", "o"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok, err := other.TryAcquire(ctx, "a/other", "o", time.Minute); !ok || err != nil {
		t.Fatal(ok, err)
	}
	got := map[string]driver.Holder{}
	if err := b.List(ctx, "a/", func(k string, h driver.Holder) bool { got[k] = h; return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a/1"].Owner != "o-a/1" || got["a/2\x00"].Owner != "o-a/2\x00" || got["a/1"].Token != 1 {
		t.Fatalf("List(a/) = %+v", got)
	}
	n := 0
	if err := b.List(ctx, "", func(string, driver.Holder) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("List stopping at once: %d calls, %v", n, err)
	}
}

func TestCreateTable_ExistingTableIsFineAnotherSchemaIsNot(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	if err := dynamolock.CreateTable(ctx, c, testTable, nil); err != nil {
		t.Fatalf("second CreateTable: %v", err)
	}
	name := "dlock_other_schema"
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &name,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: ptr("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: ptr("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		t.Fatal(err)
	}
	if err := dynamolock.CreateTable(ctx, c, name, nil); err == nil {
		t.Fatal("CreateTable accepted a table with another key schema")
	}
	if err := dynamolock.CreateTable(ctx, c, "x", nil); err == nil {
		t.Fatal("CreateTable accepted a bad name")
	}
	for _, nc := range []dynamolock.TableClient{nil, (*dynamodb.Client)(nil)} {
		if err := dynamolock.CreateTable(ctx, nc, "dlock", nil); !errors.Is(err, lock.ErrNilDatabaseClient) {
			t.Fatalf("CreateTable with a nil client: %v", err)
		}
	}
	prov := "dlock_test_provisioned"
	if err := dynamolock.CreateTable(ctx, c, prov, &dynamolock.TableOptions{ReadCapacity: 5, WriteCapacity: 5}); err != nil {
		t.Fatal(err)
	}
	out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &prov})
	if err != nil {
		t.Fatal(err)
	}
	if pt := out.Table.ProvisionedThroughput; pt == nil || pt.WriteCapacityUnits == nil || *pt.WriteCapacityUnits != 5 {
		t.Errorf("provisioned throughput = %+v", pt)
	}
}

func TestAcquire_KeysAreBinarySafeAndDistinct(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	base := randomKey(t)
	b := newBackend(t, c, &dynamolock.Options{KeyPrefix: "p\x00"})
	suffixes := []string{"", "\x00", "\x00\x00", "\xff\xfe", "a", "A", " ", strings.Repeat("\xff", 100)}
	for _, s := range suffixes {
		if _, ok, err := b.TryAcquire(ctx, base+s, "o", time.Minute); !ok || err != nil {
			t.Fatalf("key %q: %v, %v", base+s, ok, err)
		}
	}
	long := base + strings.Repeat("\x00\xff", lock.MaxKeyLength)[:lock.MaxKeyLength-len(base)]
	if _, ok, err := b.TryAcquire(ctx, long, "o", time.Minute); !ok || err != nil {
		t.Fatalf("longest key: %v, %v", ok, err)
	}
	for _, s := range suffixes {
		if ok, err := b.Release(ctx, base+s, "o"); !ok || err != nil {
			t.Errorf("release %q: %v, %v", base+s, ok, err)
		}
	}
	if ok, err := b.Release(ctx, long, "o"); !ok || err != nil {
		t.Errorf("release the longest key: %v, %v", ok, err)
	}
}

// TestRequests_OnePerOperation counts the HTTP requests each operation
// sends: one, whatever its outcome, and no retry of a conditional write.
func TestRequests_OnePerOperation(t *testing.T) {
	newClient(t) // the table
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	rc := &requestCounter{next: tr, ops: map[string]int{}}
	c := dial(t, testenv.URL(t, testenv.DynamoDB), func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: rc}
	})
	b := newBackend(t, c, nil)
	ctx := ctxT(t)
	key := randomKey(t)
	steps := []struct {
		name string
		do   func() (bool, error)
		ok   bool
		want string
	}{
		{"acquire", func() (bool, error) { _, ok, err := b.TryAcquire(ctx, key, "a", time.Minute); return ok, err }, true, "UpdateItem"},
		{"refused acquire", func() (bool, error) { _, ok, err := b.TryAcquire(ctx, key, "b", time.Minute); return ok, err }, false, "UpdateItem"},
		{"refresh", func() (bool, error) { _, ok, err := b.Refresh(ctx, key, "a", time.Minute); return ok, err }, true, "UpdateItem"},
		{"refused refresh", func() (bool, error) { _, ok, err := b.Refresh(ctx, key, "b", time.Minute); return ok, err }, false, "UpdateItem"},
		{"inspect", func() (bool, error) { _, ok, err := b.Inspect(ctx, key); return ok, err }, true, "GetItem"},
		{"release", func() (bool, error) { return b.Release(ctx, key, "a") }, true, "UpdateItem"},
		{"refused release", func() (bool, error) { return b.Release(ctx, key, "a") }, false, "UpdateItem"},
		{"ping", func() (bool, error) { return true, b.Ping(ctx) }, true, "GetItem"},
	}
	rc.take()
	for _, s := range steps {
		ok, err := s.do()
		if err != nil || ok != s.ok {
			t.Fatalf("%s = %v, %v; want %v", s.name, ok, err, s.ok)
		}
		if got := rc.take(); len(got) != 1 || got[s.want] != 1 {
			t.Errorf("%s sent %v, want one %s", s.name, got, s.want)
		}
	}
}

// TestRequests_WritesAreNeverRetried: on a client whose retryer would try
// three times, a conditional write that fails is sent once (a retry of a
// write whose answer was lost would fail its own condition and read as
// contention).
func TestRequests_WritesAreNeverRetried(t *testing.T) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	rc := &requestCounter{next: tr, ops: map[string]int{}}
	c := dial(t, "http://"+closedPort(t), func(o *dynamodb.Options) {
		o.HTTPClient = &http.Client{Transport: rc}
		o.RetryMaxAttempts = 3
	})
	b := newBackend(t, c, nil)
	ctx := ctxT(t)
	if _, _, err := b.TryAcquire(ctx, "k", "a", time.Minute); err == nil {
		t.Fatal("TryAcquire on a closed port succeeded")
	}
	if _, _, err := b.Refresh(ctx, "k", "a", time.Minute); err == nil {
		t.Fatal("Refresh on a closed port succeeded")
	}
	if _, err := b.Release(ctx, "k", "a"); err == nil {
		t.Fatal("Release on a closed port succeeded")
	}
	if got := rc.take(); got["UpdateItem"] != 3 || len(got) != 1 {
		t.Errorf("sent %v, want UpdateItem 3 (one per call)", got)
	}
}

// answerDropper is a TCP proxy to upstream that forwards each request,
// waits for the server's answer, and closes the client's connection
// instead of passing the answer on: the write is applied, its outcome is
// lost.
func answerDropper(t *testing.T, upstream string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				wg.Go(func() { _, _ = io.Copy(up, conn) }) // ends when conn or up closes
				buf := make([]byte, 1)
				_, _ = up.Read(buf) // the answer has begun: the write was applied
			})
		}
	})
	return l.Addr().String()
}

// TestAmbiguousAcquire_AppliedButAnswerLostIsAnError: an acquisition that
// DynamoDB applied but whose answer never arrived is an error, not
// contention (and not a retry that would fail its own condition), and the
// Locker's clean-up frees it.
func TestAmbiguousAcquire_AppliedButAnswerLostIsAnError(t *testing.T) {
	direct := newClient(t)
	endpoint := testenv.URL(t, testenv.DynamoDB)
	proxied := dial(t, "http://"+answerDropper(t, strings.TrimPrefix(endpoint, "http://")), nil)
	ctx := ctxT(t)
	key := randomKey(t)
	l, err := dynamolock.New(proxied, &dynamolock.Options{Table: testTable, Lock: lock.Options{Identity: "lost-answer"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(ctx, key, time.Minute)
	if err == nil || errors.Is(err, lock.ErrLockNotAcquired) {
		t.Fatalf("Acquire = %v; want a store error", err)
	}
	t.Logf("Acquire: %v", err)
	l.Close() // waits for the best-effort release of the unknown claim
	// The acquisition was applied (the counter moved), and the Locker's
	// clean-up release — applied too, its answer lost as well — freed it.
	it := item(t, direct, key)
	if f, _ := it["lock_fence"].(*types.AttributeValueMemberN); f == nil || f.Value != "1" {
		t.Fatalf("fence = %v; want 1: the acquisition was applied", it["lock_fence"])
	}
	if _, held := it["lock_owner"]; held {
		t.Fatalf("the unknown claim was not released: %v", it)
	}
}
