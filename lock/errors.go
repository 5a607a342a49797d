package lock

import (
	"errors"
	"fmt"
	"strconv"
)

// The sentinel errors of dlock. Every layer and store returns them wrapped
// (with the operation and the key), so compare with [errors.Is], never with ==.
var (
	// ErrLockNotAcquired means another holder has the key. It is an answer
	// from the store, never a disguised store failure.
	ErrLockNotAcquired = errors.New("lock: not acquired")
	// ErrLockNotHeld means the lock is no longer ours: it was released,
	// it expired, or the store lost it. Context causes use it too when a
	// held lock can no longer be vouched for.
	ErrLockNotHeld = errors.New("lock: not held")
	// ErrInvalidTTL means a TTL that is zero or negative.
	ErrInvalidTTL = errors.New("lock: invalid TTL")
	// ErrEmptyKey means a key of zero length.
	ErrEmptyKey = errors.New("lock: empty key")
	// ErrKeyTooLong means a key longer than [MaxKeyLength] bytes.
	ErrKeyTooLong = errors.New("lock: key too long")
	// ErrNilConfig means a required configuration value was nil.
	ErrNilConfig = errors.New("lock: nil config")
	// ErrNilDatabaseClient means a store was given a nil client, pool or
	// backend.
	ErrNilDatabaseClient = errors.New("lock: nil database client")
	// ErrClosed means the Locker was closed.
	ErrClosed = errors.New("lock: locker closed")
)

// MaxKeyLength is the longest key, in bytes, that a Locker accepts. Keys are
// arbitrary bytes (they need not be UTF-8 and may contain NUL); stores encode
// them as they must.
const MaxKeyLength = 1024

// MaxIdentityLength is the longest [Options.Identity], in bytes.
const MaxIdentityLength = 256

// ValidateKey reports whether key is acceptable to every store: non-empty
// and at most [MaxKeyLength] bytes. The error wraps [ErrEmptyKey] or
// [ErrKeyTooLong].
func ValidateKey(key string) error {
	switch {
	case key == "":
		return ErrEmptyKey
	case len(key) > MaxKeyLength:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrKeyTooLong, len(key), MaxKeyLength)
	}
	return nil
}

// opError wraps err with the operation and the key, keeping err's chain for
// errors.Is. The key is quoted and shortened so that binary or very long keys
// keep error messages readable.
func opError(op, key string, err error) error {
	return fmt.Errorf("%s %s: %w", op, QuoteKey(key), err)
}

// QuoteKey returns key in a form fit for logs and error messages: quoted
// with Go escapes, and cut after 64 bytes with the full length noted.
func QuoteKey(key string) string {
	const max = 64
	if len(key) <= max {
		return strconv.Quote(key)
	}
	return strconv.Quote(key[:max]) + "…(" + strconv.Itoa(len(key)) + " bytes)"
}
