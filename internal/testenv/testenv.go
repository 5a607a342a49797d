// Package testenv gives tests the addresses of the real stores started by
// scripts/services.sh.
//
// A test that needs a store calls [URL]. When the variable is unset the test
// is skipped on a developer's machine, and fails when the CI environment
// variable is set: in CI a missing server is a failure, never a skip.
package testenv

import (
	"os"
	"testing"
)

// Names of the variables that scripts/services.sh env prints.
const (
	Redis        = "DLOCK_TEST_REDIS_URL"
	RedisCluster = "DLOCK_TEST_REDIS_CLUSTER_URL"
	Postgres     = "DLOCK_TEST_POSTGRES_URL"
	PgBouncer    = "DLOCK_TEST_PGBOUNCER_URL"
	Etcd         = "DLOCK_TEST_ETCD_URL"
	EtcdCluster  = "DLOCK_TEST_ETCD_CLUSTER_URL"
	DynamoDB     = "DLOCK_TEST_DYNAMODB_URL"
	ZooKeeper    = "DLOCK_TEST_ZK_URL"
)

// URL returns the value of the environment variable name. When it is empty
// the test fails if CI is set and is skipped otherwise.
func URL(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set: run the tests through `make test` (scripts/services.sh starts the servers)", name)
	}
	t.Skipf("%s is not set; `make test` starts the servers (under CI a missing server fails)", name)
	return ""
}
