package etcdlock_test

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

// suiteOptions declares etcd's TTLs to the suite: whole seconds, at least
// the server's minimum lease TTL, found by asking for a 1-second lease.
func suiteOptions(t *testing.T, c *clientv3.Client) locktest.Options {
	t.Helper()
	g, err := c.Grant(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctxT(t), g.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("server's minimum lease TTL: %ds", g.TTL)
	return locktest.Options{MinTTL: time.Duration(g.TTL) * time.Second, Granularity: time.Second}
}

func runConformance(t *testing.T, endpointsVar string) {
	c := newClient(t, endpointsVar, nil)
	locktest.Run(t, func(t *testing.T) driver.Backend {
		// Each backend gets a client of its own, as another process would.
		b, err := etcdlock.NewBackend(newClient(t, endpointsVar, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, suiteOptions(t, c))
}

func TestConformance(t *testing.T) { runConformance(t, testenv.Etcd) }

func TestConformance_Cluster(t *testing.T) { runConformance(t, testenv.EtcdCluster) }
