package pglock

import (
	"crypto/sha256"
	"encoding/binary"
)

// keyDomain separates dlock's key ids from every other use of SHA-256 and
// versions the mapping: a change of the mapping is a change of this string.
const keyDomain = "dlock/pglock/v1\x00"

// KeyID returns the bigint that the advisory lock for key in namespace is
// taken on. It is stable across versions of this package, processes and
// machines, so that every process agrees on it:
//
//	KeyID = int64(big-endian first 8 bytes of SHA-256(
//	        "dlock/pglock/v1\x00" || uint32be(len(namespace)) || namespace || key))
//
// The length prefix makes the encoding of (namespace, key) unambiguous. In
// SQL, for a namespace n and key k given as bytea:
//
//	SELECT ('x' || encode(substr(sha256('dlock/pglock/v1'::bytea || '\x00'::bytea
//	         || int4send(length(n)) || n || k), 1, 8), 'hex'))::bit(64)::bigint;
//
// Two different keys may map to the same id (probability about n²/2⁶⁵ among
// n keys in use at once: one in 3.7·10⁷ for a million keys). A collision can
// only make the two keys exclude each other; it never lets two holders share
// a key. Other applications' advisory locks live in the same space of ids;
// give dlock its own namespace (see [Options.Namespace]) or its own database
// when that matters.
func KeyID(namespace, key string) int64 {
	var buf [256]byte // most keys fit: no allocation
	b := append(buf[:0], keyDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(namespace)))
	b = append(b, namespace...)
	b = append(b, key...)
	sum := sha256.Sum256(b)
	return int64(binary.BigEndian.Uint64(sum[:8]))
}
