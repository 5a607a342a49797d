// Package dynamolock keeps dlock's locks in an Amazon DynamoDB table,
// through the AWS SDK for Go v2 ([dynamodb.Client]), for teams that live
// on AWS and would rather not run a lock server.
//
//	if err := dynamolock.CreateTable(ctx, ddb, "dlock", nil); err != nil { … } // once
//	locker, err := dynamolock.New(ddb, &dynamolock.Options{Table: "dlock"})
//	lk, err := locker.Acquire(ctx, "invoice/42", 30*time.Second)
//
// # The table and its items
//
// One table (default [DefaultTable], made by [CreateTable] or by hand)
// whose partition key is lock_key, of type binary, and no sort key. Each
// lock key has one item:
//
//	lock_key         B  Options.KeyPrefix + the key's bytes, unchanged
//	lock_owner       S  the holder's owner string; absent while free
//	lock_expires_ms  N  expiry, in ms since the Unix epoch, by the holder's clock
//	lock_fence       N  the last fencing token handed out for the key
//
// Package once's completion records ([NewRecords]) live in the item of
// their key too, in attributes of their own (once_fence, once_done,
// once_expires_ms) that the lock's writes never touch.
//
// The key is stored as raw bytes, so any key up to [lock.MaxKeyLength]
// bytes works, NUL and invalid UTF-8 included, and no two keys share an
// item.
//
// # How it works
//
// Every operation is one conditional UpdateItem, one HTTP request:
//
//   - Acquire: if lock_owner does not exist or lock_expires_ms ≤ now, set
//     owner and expiry (now + TTL) and ADD 1 to lock_fence, returning its
//     new value (ReturnValues UPDATED_NEW): the fencing token comes back in
//     the same answer. A ConditionalCheckFailedException is contention:
//     [lock.ErrLockNotAcquired].
//   - Refresh: if lock_owner = owner and lock_expires_ms > now, set a new
//     expiry.
//   - Release: if lock_owner = owner, REMOVE owner and expiry, keeping the
//     counter. It reports the lock not held when the expiry it removed had
//     passed.
//
// TTLs are whole milliseconds, rounded up. DynamoDB applies a conditional
// write atomically on the item's leader and its conditions read the latest
// committed value, so two clients can never both see their acquisition
// succeed. [Backend.Inspect] is a strongly consistent GetItem and
// [Backend.List] a strongly consistent Scan of the table.
//
// The SDK's retryer is switched off for the three writes (one attempt each):
// a write whose answer was lost and that the SDK sent again would fail its
// own condition and be misreported as contention. An attempt that times out
// or fails is an error, never [lock.ErrLockNotAcquired], and the Locker then
// releases the claim that may have been applied. Waiting and retrying is
// package retry's job. Reads keep the client's own retry policy.
//
// # Clocks: what the TTL means here
//
// DynamoDB does not expire anything on its own time: the expiry is a
// number the acquiring client writes, computed from its own clock, and
// compared by the next client with its own clock. So a lock is taken over
// once the clock of the client trying to take it reads past the expiry
// that the holder wrote. If the holder's clock is behind the taker's by
// d, the lock lasts TTL − d in real time; if it is ahead, TTL + d.
//
// [lock.Hold] refreshes the lock and cancels the holder's context when no
// refresh has succeeded for TTL − margin (margin defaults to TTL/5),
// measured on the holder's own monotonic clock. Mutual exclusion therefore
// holds as long as no client's wall clock is ahead of a holder's by more
// than that margin minus one round trip: with a 30 s TTL and the default
// margin, up to about 6 s of skew. Keep the clients' clocks synchronised
// (NTP, chrony, or Amazon Time Sync on EC2, which keep skew in the
// milliseconds), keep TTLs large against the worst skew you expect, and
// give Hold a margin of at least twice that skew. A clock stepped forward
// on one client lets it take over locks early; a clock stepped back makes
// locks it writes outlive their TTL.
//
// Fencing does not depend on clocks: the token is the per-key counter,
// incremented in the same atomic write that grants the lock, so every new
// holder of a key gets a larger token than every earlier one, whatever the
// clocks say. Pass [lock.Lock.Token] with every write the lock protects,
// and have the resource refuse a token smaller than one it has seen: that
// is what keeps a holder that paused or whose clock misled it from doing
// harm.
//
// # What is promised, and what is not
//
//   - Mutual exclusion and ownership within the clock assumption above.
//   - Fencing: tokens of a key only grow, as long as its item exists.
//     Items are never deleted by dlock; deleting one (or enabling
//     DynamoDB's Time to Live on the table, or restoring an older backup)
//     restarts its counter at 1. One small item stays per key ever
//     locked: per-tick keys (package cron) accumulate.
//   - Conditional writes are atomic within one region. A global table
//     (in its default, eventually consistent multi-region mode) settles
//     concurrent writes made in different regions by "last writer wins",
//     so two regions could both grant a lock: point every client at the
//     same region.
//   - Loss is not pushed ([driver.LossNotifier] is not implemented): a
//     holder learns of a lost lock at its next refresh. Waiting for a
//     release is polling ([driver.Waiter] is not implemented).
//   - Each acquire, refresh and release is a write: on an on-demand table
//     it costs one write request unit, and a contended acquisition costs
//     one as well (failed conditional writes are billed).
//
// [Backend] implements [driver.Inspector] (Lockers from [New] expose it as
// [lock.Inspector]) and [driver.Lister]. The Locker does not own the
// client.
package dynamolock
