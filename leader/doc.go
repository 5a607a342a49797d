// Package leader elects one leader among replicas that share a lock store,
// runs the leader's work under a context that ends the moment leadership
// can no longer be guaranteed, and campaigns again after every loss.
//
//	e, _ := leader.New(locker, "billing-worker", nil)
//	err := e.Run(ctx, func(ctx context.Context) error {
//		term, _ := leader.TermFrom(ctx) // fence writes with it
//		return work(ctx, term)
//	})
//
// # Terms and fencing
//
// Leadership is a lock on the election's key, kept alive by [lock.Hold].
// Its fencing token is the term: strictly larger for every new leader.
// Pass the term with every write the leader makes, and have the resource
// refuse writes with a smaller term than it has seen; a leader that was
// paused past its TTL and wakes up still believing it leads is then
// harmless.
//
// # Timing
//
// The leader's context is cancelled when a refresh fails to confirm the
// lock, when the store reports it lost, or when no refresh succeeded within
// TTL − margin (see [lock.Hold]) — before another replica can take over,
// given clocks that run at about the same rate. On [Elector.Resign], on
// fn's return and when Run's context ends, the lock is released at once,
// so a standby takes over within its retry interval (at once on stores
// that can wait for a release); after a crash, within the TTL.
//
// What it cannot promise: that a paused leader stops writing. Fence.
package leader
