package zklock_test

import (
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/zklock"
	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// testOptions fit the test server (scripts/svc/zookeeper.sh): sessions
// from 200 ms to 60 s. The base of 1 s keeps short sessions alive on a
// loaded machine; 60 s lets the suite's one-minute TTLs have sessions of
// their own length.
func testOptions() *zklock.Options {
	return &zklock.Options{
		Root:              "/dlock-test",
		SessionTimeout:    time.Second,
		MaxSessionTimeout: 60 * time.Second,
	}
}

func TestConformance(t *testing.T) {
	servers := servers(t)
	locktest.Run(t, func(t *testing.T) driver.Backend {
		b, err := zklock.NewBackend(servers, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, locktest.Options{})
}

// TestConformance_AdvisoryTTL runs the suite with Options.AdvisoryTTL: a
// lock lives as long as its holder's session, so a holder that stops
// refreshing but stays connected keeps it, and the expiry tests are skipped.
func TestConformance_AdvisoryTTL(t *testing.T) {
	servers := servers(t)
	opts := testOptions()
	opts.AdvisoryTTL = true
	locktest.Run(t, func(t *testing.T) driver.Backend {
		b, err := zklock.NewBackend(servers, opts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, locktest.Options{AdvisoryTTL: true, MinTTL: time.Second})
}
