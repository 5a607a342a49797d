// Package cron runs scheduled jobs so that each tick of a job runs on
// exactly one of the replicas that share a lock store.
//
// Every replica runs the same [Scheduler] with the same jobs. At each tick,
// each replica tries once to take a lock whose key names the job and the
// tick's scheduled time ("cron/report@2026-11-22T09:00:00Z"); the one that
// gets it runs the job, the others count the tick as skipped. Because the
// key names the tick, a slow job never blocks the next tick, and a replica
// that comes late to a tick finds it taken.
//
// # Clock skew
//
// Replicas fire by their own clocks, which disagree. A replica whose clock
// runs ahead may finish a short job before a lagging replica even reaches
// the tick; if it released the lock at once, the lagging replica would run
// the tick again. So the lock is held at least until MinHold after the
// scheduled time (default: half the interval), which must exceed the skew
// between replicas — like ShedLock's lockAtLeastFor. MaxHold is the lock's
// TTL, refreshed while the job runs (lockAtMostFor).
//
// # What is promised, and what is not
//
// A tick runs at most once while the store keeps its promises and clock
// skew stays below MinHold, and exactly once when at least one replica is
// up at the tick and the replica that takes it survives the run. A tick
// whose runner crashes is not run again by the others (it is not a queue);
// use package once for work that must complete. The job's context is
// cancelled if the lock is lost while the job runs; fence its writes with
// [lock.TokenFrom].
//
// Schedules use robfig/cron's parser (five fields, an optional leading
// seconds field, descriptors, CRON_TZ=), in UTC unless told otherwise, and
// @every intervals aligned to absolute time so that replicas agree on tick
// names.
package cron
