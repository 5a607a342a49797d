// Command dlock runs commands under a distributed lock — flock(1) across
// machines — for crontab lines and shell scripts.
//
//	go install github.com/dlockgo/dlock/cmd/dlock@latest
//
//	dlock run    --key K [--ttl 30s] [--wait 0] [--grace 10s] -- command [args…]
//	dlock leader --key K [--ttl 15s] [--once] [--grace 10s] -- command [args…]
//	dlock ls     [--prefix P] [--json]
//
// The store is named by --url or DLOCK_URL (redis://, rediss://,
// postgres://, etcd://, zk://, dynamodb://, mem://; see package backends). Without either,
// dlock uses mem://, which lives in one process and so excludes nothing
// across processes: it is for tests, and dlock says so on stderr.
//
// run takes the lock (once, or waiting up to --wait with backoff), keeps it
// alive with [lock.Hold] while the command runs, and passes DLOCK_KEY and
// DLOCK_TOKEN (the fencing token) in the command's environment. leader runs
// the command only while this process leads the election K (package
// leader). ls lists held locks on the stores that can (Redis, etcd, and
// PostgreSQL for holders that record themselves).
//
// # What it promises, and what not
//
// A lock is a lease: when dlock cannot refresh it within its TTL (the
// store is unreachable, the host was suspended), or the store reports it
// lost, dlock sends SIGTERM to the command's process group, SIGKILL after
// --grace, and exits with 78. Between the loss and the command's end,
// another holder may already run: commands whose writes must never overlap
// should pass DLOCK_TOKEN to the resource and have it refuse smaller
// tokens. A dlock killed with SIGKILL cannot stop its command; the lock
// then expires after --ttl and another holder may start while the orphaned
// command still runs.
//
// The holder's identity (--identity, default hostname/pid) is stored with
// the lock so that ls and the waiting status line can name it. With
// PostgreSQL this needs ?dlock_record_holders=true in the URL of the
// holders (and of ls): its advisory locks are taken on a hash of the key,
// so only holders that record themselves can be named or listed.
//
// Exit status: the command's own when it ran (128+N when killed by signal
// N); 64 usage; 69 store error; 75 busy (--busy-code); 78 lock lost; 126
// cannot execute; 127 not found; 130/143 interrupted while waiting.
package main
