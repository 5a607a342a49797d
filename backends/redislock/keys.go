package redislock

import "strings"

// Keys in Redis.
//
// A user key k becomes two Redis keys that share one hash slot:
//
//	<prefix>{<esc(k)>}        the lock: value = owner, PX = TTL
//	<prefix>{<esc(k)>}:fence  the fencing counter: the last token handed out
//
// Redis Cluster (and go-redis's Ring) hash only the part between the first
// '{' of a key and the first '}' after it. The prefix may contain neither
// brace, so the first '{' is always ours; esc removes every '}' from k, so
// the first '}' after it is always ours too. Both keys therefore hash the
// same non-empty tag, esc(k), whatever bytes k holds — including '{', '}',
// NUL and invalid UTF-8, which Redis keys carry unchanged.
//
// esc writes '\' as `\x5c` and '}' as `\x7d` and leaves every other byte
// alone. It is injective: each '\' in its output starts an escape, so the
// output decodes unambiguously. And since esc(k) contains no '}', the lock
// key of one user key is never the fence key (or lock key) of another.

const fenceSuffix = ":fence"

// keys returns the lock key and the fence key for key. They share one
// allocation: the lock key is a prefix of the fence key.
func keys(prefix, key string) (lockKey, fenceKey string) {
	n := len(prefix) + 1 + len(key) + 1
	extra := strings.Count(key, `\`) + strings.Count(key, "}")
	n += 3 * extra
	var b strings.Builder
	b.Grow(n + len(fenceSuffix))
	b.WriteString(prefix)
	b.WriteByte('{')
	if extra == 0 {
		b.WriteString(key)
	} else {
		for i := 0; i < len(key); i++ {
			switch c := key[i]; c {
			case '\\':
				b.WriteString(`\x5c`)
			case '}':
				b.WriteString(`\x7d`)
			default:
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('}')
	b.WriteString(fenceSuffix)
	s := b.String()
	return s[:n], s
}

// unkey returns the user key of a lock key made by keys with prefix, and
// false for any other Redis key (a fence key, a record, a foreign key).
func unkey(prefix, redisKey string) (string, bool) {
	rest, ok := strings.CutPrefix(redisKey, prefix+"{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return "", false
	}
	rest = rest[:len(rest)-1]
	if strings.Contains(rest, "}") {
		return "", false
	}
	if !strings.Contains(rest, `\`) {
		return rest, true
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		switch {
		case strings.HasPrefix(rest[i:], `\x5c`):
			b.WriteByte('\\')
			i += 3
		case strings.HasPrefix(rest[i:], `\x7d`):
			b.WriteByte('}')
			i += 3
		case rest[i] == '\\':
			return "", false // esc never writes a bare backslash
		default:
			b.WriteByte(rest[i])
		}
	}
	return b.String(), true
}

// globEscape quotes the characters that are special in a Redis MATCH
// pattern.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
