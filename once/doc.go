// Package once runs a named job to completion at most once across a
// cluster, with a durable completion record in the lock store's own
// storage.
//
//	res, err := once.Do(ctx, locker, records, "invoice/2026-11/acme", func(ctx context.Context, token uint64) error {
//		return sendInvoice(ctx, token) // fence the writes with token
//	}, nil)
//
// # What "exactly once" means here
//
// Honestly: at most one *completed* run per key, plus retries of runs that
// failed. A run that returns an error leaves no record, so the next caller
// runs the job again; a runner that crashes leaves its lock to expire
// after its TTL, and the next caller runs it again. So the job's side
// effects must be idempotent, or fenced: every run gets the fencing token
// of its lock, strictly larger than any earlier run's for the same key;
// pass it with every write and let the resource refuse smaller ones.
//
// The completion record itself is fenced too. [Store.Begin] atomically
// checks for a record and raises the key's fence to the runner's token;
// [Store.Complete] writes the record only while the fence is still that
// token. A runner that lost its lock (paused past its TTL, cut off from the
// store) and finishes late cannot write a record over a newer runner, and a
// newer runner never starts a job that an older one completed.
//
// # Callers that arrive together
//
// The first caller takes the key's lock and runs the job. The others, by
// default, wait (with package retry) for the lock and then find the record:
// they return [AlreadyDone] without running anything. With
// [Options.NoWait] they return [Busy] at once instead.
//
// # Stores
//
// The completion records live behind the small [Store] interface, which
// every dlock store implements with its own storage: memlock (a map),
// redislock (a hash per key), pglock (a table), etcdlock (a key). Its
// methods use only standard types, so the stores need not import this
// package.
package once
