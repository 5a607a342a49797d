package pglock_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/pglock"
	"github.com/dlockgo/dlock/lock"
)

// The mapping is a promise to operators and to other processes: these
// values must never change. They were computed independently (Python's
// hashlib over the documented encoding).
func TestKeyID_IsStable(t *testing.T) {
	for _, tc := range []struct {
		ns, key string
		want    int64
	}{
		{"", "a", -2586667416691262840},
		{"", "jobs/nightly", 5674551458079483203},
		{"app", "jobs/nightly", -6068358415994170868},
		{"", "\x00\xff", -2434151170507152924},
	} {
		if got := pglock.KeyID(tc.ns, tc.key); got != tc.want {
			t.Errorf("KeyID(%q, %q) = %d, want %d", tc.ns, tc.key, got, tc.want)
		}
	}
}

// The SQL in KeyID's documentation computes the same ids.
func TestKeyID_MatchesSQL(t *testing.T) {
	pool := sharedPool(t)
	for _, tc := range []struct{ ns, key string }{
		{"", "a"}, {"app", "jobs/nightly"}, {"", "\x00\xff"}, {"ns\x00", "\xc3\x28"},
	} {
		var got int64
		err := pool.QueryRow(ctxFor(t), `SELECT ('x' || encode(substr(sha256('dlock/pglock/v1'::bytea || '\x00'::bytea
			|| int4send(length($1::bytea)) || $1::bytea || $2::bytea), 1, 8), 'hex'))::bit(64)::bigint`,
			[]byte(tc.ns), []byte(tc.key)).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if want := pglock.KeyID(tc.ns, tc.key); got != want {
			t.Errorf("SQL id of (%q, %q) = %d, KeyID = %d", tc.ns, tc.key, got, want)
		}
	}
}

// encode is the documented input of the hash, written out independently.
func encode(ns, key string) []byte {
	b := []byte("dlock/pglock/v1\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(ns)))
	return append(append(b, ns...), key...)
}

// FuzzKeyID checks the documented definition and that the encoding of
// (namespace, key) is unambiguous: moving bytes between namespace and key
// never gives the same hash input.
func FuzzKeyID(f *testing.F) {
	f.Add("", "a", "a", "")
	f.Add("ab", "c", "a", "bc")
	f.Add("\x00", "", "", "\x00")
	f.Fuzz(func(t *testing.T, ns1, key1, ns2, key2 string) {
		sum := sha256.Sum256(encode(ns1, key1))
		if got, want := pglock.KeyID(ns1, key1), int64(binary.BigEndian.Uint64(sum[:8])); got != want {
			t.Fatalf("KeyID(%q, %q) = %d, want %d", ns1, key1, got, want)
		}
		if again := pglock.KeyID(ns1, key1); again != pglock.KeyID(ns1, key1) {
			t.Fatal("KeyID is not deterministic")
		}
		if (ns1 != ns2 || key1 != key2) && string(encode(ns1, key1)) == string(encode(ns2, key2)) {
			t.Fatalf("(%q, %q) and (%q, %q) encode alike", ns1, key1, ns2, key2)
		}
	})
}

// FuzzAcquire_AnyKey takes and frees arbitrary keys on the real server:
// any bytes map to an id, exclude a second Locker, and come free again.
func FuzzAcquire_AnyKey(f *testing.F) {
	for _, k := range []string{"a", "\x00", "\xff\xfe", "🔒", "{x}", strings.Repeat("k", lock.MaxKeyLength)} {
		f.Add(k)
	}
	pool := sharedPool(f)
	a := newLocker(f, pool, nil)
	b := newLocker(f, pool, nil)
	f.Fuzz(func(t *testing.T, key string) {
		if lock.ValidateKey(key) != nil {
			return
		}
		lk, err := a.Acquire(ctxFor(t), key, time.Minute)
		if errors.Is(err, lock.ErrLockNotAcquired) {
			return // a concurrent fuzz worker holds the same key
		}
		if err != nil {
			t.Fatalf("Acquire(%q): %v", key, err)
		}
		if lk2, err := b.Acquire(ctxFor(t), key, time.Minute); !errors.Is(err, lock.ErrLockNotAcquired) {
			if err == nil {
				_ = lk2.Release(ctxFor(t))
			}
			t.Fatalf("second Locker on %q: %v, want ErrLockNotAcquired", key, err)
		}
		if err := lk.Release(ctxFor(t)); err != nil {
			t.Fatalf("Release(%q): %v", key, err)
		}
	})
}
