package torture_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/internal/testenv"
	"github.com/dlockgo/dlock/torture"
)

var (
	flagStore      = flag.String("store", "all", "redis, postgres, postgres-ttl, etcd, redis-restart (a private redis-server without persistence), or all (a comma-separated list)")
	flagClients    = flag.Int("clients", 4, "client processes per store")
	flagDuration   = flag.Duration("duration", 5*time.Second, "how long clients start new acquisitions, per store")
	flagSeed       = flag.Uint64("seed", 0, "seed of keys, work times and the nemesis; 0 = from the clock (logged)")
	flagKeys       = flag.Int("keys", 4, "distinct lock keys")
	flagTTL        = flag.Duration("ttl", 0, "lock TTL; 0 = 500ms, etcd 2s")
	flagWork       = flag.Duration("work", 2*time.Millisecond, "maximum work time inside a critical section (redis-restart: 300ms unless set)")
	flagFaults     = flag.String("faults", "default", "comma-separated: kill, stop, terminate (postgres); default = all that apply; none")
	flagFaultEvery = flag.Duration("fault-every", 0, "time between faults; 0 = about 6 faults per run")
	flagBound      = flag.Duration("bound", 250*time.Millisecond, "how long a client may go on after its loss signal")
	flagKeep       = flag.Bool("keep", false, "keep the logs (their directory is logged)")
	flagCheckDir   = flag.String("check-dir", "", "TestCheckDir: check the logs kept (-keep) in this directory again")
	flagStrict     = flag.Bool("strict", false, "fail on overlaps after pg_terminate_backend too (a known pglock issue, see docs/reliability.md)")
)

func TestMain(m *testing.M) {
	if os.Getenv(torture.ClientEnv) != "" {
		os.Exit(torture.ClientMain())
	}
	if os.Getenv(torture.LayerEnv) != "" {
		os.Exit(torture.LayerMain())
	}
	leakcheck.Main(m)
}

func storeURL(t *testing.T, store string) string {
	switch store {
	case "redis":
		return testenv.URL(t, testenv.Redis)
	case "postgres":
		return testenv.URL(t, testenv.Postgres)
	case "postgres-ttl":
		u := testenv.URL(t, testenv.Postgres)
		if strings.Contains(u, "?") {
			return u + "&dlock_enforce_ttl=true"
		}
		return u + "?dlock_enforce_ttl=true"
	case "etcd":
		return "etcd://" + testenv.URL(t, testenv.Etcd)
	}
	t.Fatalf("unknown store %q", store)
	return ""
}

// TestTorture runs the battery on each store: a short run by default, a
// long one with flags (see docs/reliability.md).
func TestTorture(t *testing.T) {
	stores := strings.Split(*flagStore, ",")
	if *flagStore == "all" {
		stores = []string{"redis", "postgres", "postgres-ttl", "etcd", "redis-restart"}
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	t.Logf("seed %d (replay with -args -seed=%d)", seed, seed)
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			var url, register string
			var restart func() error
			if store == "redis-restart" {
				register = storeURL(t, "redis") // the register must survive the restart
				url, restart = privateRedis(t)
			} else {
				url = storeURL(t, store)
			}
			ttl := *flagTTL
			if ttl == 0 {
				ttl = 500 * time.Millisecond
				if store == "etcd" {
					ttl = 2 * time.Second
				}
			}
			var faults []string
			switch *flagFaults {
			case "default":
				faults = []string{"stop", "kill"}
				if strings.HasPrefix(store, "postgres") {
					faults = append(faults, "terminate")
				}
				if store == "redis-restart" {
					faults = []string{"restart"}
				}
			case "none", "":
			default:
				faults = strings.Split(*flagFaults, ",")
			}
			work := *flagWork
			if store == "redis-restart" && !flagSet("work") {
				// Sections must outlast a restart (a few ms) for the store
				// to forget a held lock.
				work = 300 * time.Millisecond
			}
			every := *flagFaultEvery
			if every == 0 {
				every = *flagDuration / 8
			}
			dir := t.TempDir()
			if *flagKeep {
				var err error
				if dir, err = os.MkdirTemp("", "torture-"+store+"-"); err != nil {
					t.Fatal(err)
				}
				t.Logf("logs in %s", dir)
			}
			ctx, cancel := context.WithTimeout(context.Background(), *flagDuration+5*time.Minute)
			defer cancel()
			start := time.Now()
			res, err := torture.Run(ctx, torture.Options{
				URL: url, Register: register, Restart: restart, Clients: *flagClients, Duration: *flagDuration, Seed: seed, Keys: *flagKeys,
				TTL: ttl, MaxWork: work, Faults: faults, FaultEvery: every, Bound: *flagBound,
				Dir: dir, Logf: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			r := res.Report
			t.Logf("%s", summary(store, *flagClients, r, time.Since(start)))
			for _, e := range r.Examples {
				t.Logf("  %s", e)
			}
			if r.Acquisitions == 0 {
				t.Errorf("no acquisitions")
			}
			if r.Overlaps != 0 || r.TokenRegressions != 0 || r.StaleAccepted != 0 || r.LateWork != 0 {
				t.Errorf("violations: overlaps %d, token regressions %d, stale writes accepted %d, late work %d",
					r.Overlaps, r.TokenRegressions, r.StaleAccepted, r.LateWork)
			}
			if r.TerminateOverlaps != 0 {
				msg := "%d overlaps after pg_terminate_backend: the server freed the lock before pglock told the holder (known issue, docs/reliability.md)"
				if *flagStrict {
					t.Errorf(msg, r.TerminateOverlaps)
				} else {
					t.Logf("KNOWN ISSUE: "+msg, r.TerminateOverlaps)
				}
			}
			if r.RestartOverlaps != 0 {
				t.Logf("EXPECTED: %d overlaps after a restart of redis without persistence; fencing must catch them (stale writes accepted: %d)",
					r.RestartOverlaps, r.StaleAccepted)
			}
			if r.Unterminated != 0 {
				t.Errorf("%d sections without an end", r.Unterminated)
			}
		})
	}
}

// TestCheckDir runs the checker again on the logs of a run kept with -keep.
func TestCheckDir(t *testing.T) {
	if *flagCheckDir == "" {
		t.Skip("no -check-dir")
	}
	paths, err := filepath.Glob(filepath.Join(*flagCheckDir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var logs [][]torture.Event
	var nemesis []torture.Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := torture.Parse(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(p) == "nemesis.log" {
			nemesis = evs
		} else {
			logs = append(logs, evs)
		}
	}
	r := torture.Check(logs, nemesis, *flagBound)
	t.Logf("%s", summary(*flagCheckDir, len(logs), r, 0))
	for _, e := range r.Examples {
		t.Logf("  %s", e)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func summary(store string, clients int, r *torture.Report, took time.Duration) string {
	b := "none"
	if v := r.Bound95(); v >= 0 {
		b = fmt.Sprintf("%.2g", v)
	}
	return fmt.Sprintf("RESULT store=%s clients=%d acquisitions=%d faults=%v overlaps=%d restart-overlaps=%d terminate-overlaps=%d pause-overlaps=%d max-pause-window=%v "+
		"token-regressions=%d writes=%d rejected=%d write-errors=%d stale-accepted=%d losses=%d p99-signal=%v "+
		"max-after-loss=%v late-work=%d max-takeover-after-kill=%v bound95=%s took=%v",
		store, clients, r.Acquisitions, r.Faults, r.Overlaps, r.RestartOverlaps, r.TerminateOverlaps, r.PauseOverlaps, r.MaxPauseWindow.Round(time.Microsecond),
		r.TokenRegressions, r.Writes, r.Rejected, r.WriteErrors, r.StaleAccepted, r.Losses, r.P99Signal().Round(time.Microsecond),
		r.MaxAfterLoss.Round(time.Microsecond), r.LateWork, r.MaxTakeover.Round(time.Millisecond), b, took.Round(time.Millisecond))
}

// privateRedis starts a redis-server of the test's own, without persistence,
// on a free port, and returns its URL and a function that kills it (-9) and
// starts it again on the same port. The shared server is never touched.
func privateRedis(t *testing.T) (string, func() error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found")
		}
		t.Skip("redis-server not found")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	var cmd *exec.Cmd
	var done chan struct{}
	start := func() error {
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			return err
		}
		done = make(chan struct{})
		c, d := cmd, done
		go func() { c.Wait(); close(d) }()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				conn.Close()
				return nil
			}
			time.Sleep(5 * time.Millisecond) // polling with a deadline
		}
		return fmt.Errorf("private redis-server on port %d did not start", port)
	}
	stop := func() {
		cmd.Process.Kill()
		<-done
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	restart := func() error {
		stop()
		return start()
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port), restart
}
