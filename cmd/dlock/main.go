package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/backends/etcdlock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// Exit codes. The command's own exit status is passed through when it ran;
// these are the codes of dlock itself.
const (
	exitUsage = 64 // bad flags or arguments (EX_USAGE)
	exitStore = 69 // the store failed or cannot be reached (EX_UNAVAILABLE)
	exitBusy  = 75 // the key is held by another holder (EX_TEMPFAIL)
	exitLost  = 78 // the lock was lost while the command ran
	exitNoRun = 126
	exitNoCmd = 127
)

const exitTable = `Exit status:
  the command's own   when the command ran and the lock was held throughout
  128+N               the command was killed by signal N
  64                  usage error (bad flags or arguments)
  69                  store error: unreachable, failed, or cannot do this
  75                  lock busy: another holder has the key (after --wait)
                      (change it with --busy-code, like flock -E)
  78                  lock lost while the command ran: it was sent SIGTERM,
                      then SIGKILL after --grace
  126                 the command cannot be executed
  127                 the command was not found
  130, 143            dlock was interrupted (SIGINT, SIGTERM) before the
                      command started`

// env is what the program takes from its process, so that tests can run
// it in-process too.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	isTTY          bool // stderr is a terminal
}

func main() {
	// go-redis logs its dial failures through a logger of its own; dlock
	// reports the error once, on one line.
	redis.SetLogger(discard{})
	e := env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, isTTY: isTerminal(os.Stderr)}
	os.Exit(e.main(os.Args[1:]))
}

// discard is a go-redis logger that prints nothing.
type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

const usage = `dlock — run commands under a distributed lock: flock(1) across machines.

Usage:
  dlock run    --key K [--ttl 30s] [--wait 0] [--grace 10s] -- command [args…]
  dlock leader --key K [--ttl 15s] [--once] [--grace 10s] -- command [args…]
  dlock ls     [--prefix P] [--json]
  dlock help [command]

The store is chosen by --url, or the DLOCK_URL environment variable:
  redis://[user:password@]host:port[/db]     rediss:// for TLS; Cluster: host:port,host:port
  postgres://user:password@host:port/db      add ?dlock_record_holders=true so that
                                             holders can be named (waiting line)
  etcd://host:port[,host:port…]
  zk://host:port[,host:port…][/root]
  dynamodb://[host:port]/table?region=R      AWS credentials from the usual chain
  mem://                                     in-process only: excludes nothing
                                             across processes (for tests)
Every URL takes ?identity=NAME (default --identity) and ?prefix=P.

Examples:
  # run a nightly job on one machine at a time; fail fast if it is running elsewhere
  DLOCK_URL=redis://10.0.0.5:6379 dlock run --key nightly-report -- ./report.sh

  # run this worker only on the elected leader
  dlock leader --url etcd://10.0.0.7:2379 --key billing-worker -- ./worker

  # who holds what
  dlock ls --prefix nightly

Run 'dlock help <command>' for a command's flags, examples and exit codes.
`

func (e env) main(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return e.run(rest)
	case "leader":
		return e.leader(rest)
	case "ls":
		return e.ls(rest)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && cmd == "help" {
			switch rest[0] {
			case "run", "leader", "ls":
				return e.main([]string{rest[0], "--help"})
			}
		}
		fmt.Fprint(e.stdout, usage)
		return 0
	default:
		fmt.Fprintf(e.stderr, "dlock: unknown command %q (want run, leader or ls; see 'dlock help')\n", cmd)
		return exitUsage
	}
}

// common are the flags every command takes.
type common struct {
	url      string
	identity string
	quiet    bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "store URL (default $DLOCK_URL)")
	fs.StringVar(&c.identity, "identity", "", "who this holder is, shown by 'dlock ls' (default hostname/pid)")
	fs.BoolVar(&c.quiet, "quiet", false, "no status line or notices on stderr; errors only")
}

// parse parses args with fs. It returns -1 to go on, or the exit code
// (0 after --help).
func (e env) parse(fs *flag.FlagSet, args []string, help string) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.stdout, help)
		fs.SetOutput(e.stdout)
		fmt.Fprintln(e.stdout, "\nFlags:")
		fs.PrintDefaults()
		return 0
	case err != nil:
		fmt.Fprintf(e.stderr, "dlock %s: %v (see 'dlock %s --help')\n", fs.Name(), err, fs.Name())
		return exitUsage
	}
	return -1
}

// open connects to the store named by --url or DLOCK_URL.
func (e env) open(ctx context.Context, c *common) (lock.Locker, *backends.Config, error) {
	raw := c.url
	if raw == "" {
		raw = e.getenv("DLOCK_URL")
	}
	if raw == "" {
		raw = "mem://"
	}
	cfg, err := backends.ParseURL(raw)
	if err != nil {
		return nil, nil, err
	}
	if c.identity != "" {
		cfg.Identity = c.identity
	}
	if cfg.Identity == "" {
		cfg.Identity = defaultIdentity()
	}
	if len(cfg.Identity) > lock.MaxIdentityLength {
		return nil, nil, fmt.Errorf("--identity is %d bytes, the limit is %d", len(cfg.Identity), lock.MaxIdentityLength)
	}
	if cfg.Store == backends.Memory && !c.quiet {
		fmt.Fprintln(e.stderr, "dlock: note: using mem://, an in-process store that excludes nothing across processes (set --url or DLOCK_URL)")
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var l lock.Locker
	if cfg.Store == backends.Etcd {
		l, err = openEtcd(octx, cfg)
	} else {
		l, err = backends.Open(octx, cfg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open %s: %w", backends.Redact(raw), err)
	}
	return l, cfg, nil
}

// openEtcd is backends.Open for etcd with a silent client: the etcd
// client logs retries as JSON on stderr by default, and dlock prints one
// line per error instead.
func openEtcd(ctx context.Context, cfg *backends.Config) (lock.Locker, error) {
	dial := cfg.DialTimeout
	if dial == 0 {
		dial = 5 * time.Second
	}
	ecfg := clientv3.Config{
		Endpoints:   cfg.Addrs,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: dial,
		Logger:      zap.NewNop(),
	}
	if cfg.TLS {
		ecfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	client, err := clientv3.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	b, err := etcdlock.NewBackend(client, &etcdlock.Options{KeyPrefix: cfg.Prefix})
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, dial)
		err = b.Ping(pctx)
		cancel()
		if err != nil {
			b.Close()
		}
	}
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	}
	l, err := lock.New(closing{b, client.Close}, &lock.Options{Identity: cfg.Identity})
	if err != nil {
		b.Close()
		client.Close()
		return nil, err
	}
	return l, nil
}

// closing is an etcd Backend that closes its client after itself. It
// forwards the capabilities dlock uses.
type closing struct {
	driver.Backend
	closeClient func() error
}

func (c closing) Close() error { return errors.Join(c.Backend.Close(), c.closeClient()) }

func (c closing) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	return c.Backend.(driver.Inspector).Inspect(ctx, key)
}

func (c closing) List(ctx context.Context, prefix string, fn func(string, driver.Holder) bool) error {
	return c.Backend.(driver.Lister).List(ctx, prefix, fn)
}

func (c closing) WaitFree(ctx context.Context, key string) error {
	return c.Backend.(driver.Waiter).WaitFree(ctx, key)
}

func (c closing) NotifyLoss(ctx context.Context, key, owner string) <-chan struct{} {
	return c.Backend.(driver.LossNotifier).NotifyLoss(ctx, key, owner)
}

func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// fail prints err as one line, without the store's password, and returns
// code.
func (e env) fail(cmd string, cfg *backends.Config, code int, err error) int {
	fmt.Fprintf(e.stderr, "dlock %s: %s\n", cmd, oneLine(err, cfg))
	return code
}

// oneLine flattens err's message to one line and hides the passwords of
// cfg in it.
func oneLine(err error, cfg *backends.Config) string {
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	if cfg == nil {
		return msg
	}
	// ParseURL fills Password for every store, PostgreSQL included.
	secrets := []string{cfg.Password, url.PathEscape(cfg.Password), url.QueryEscape(cfg.Password)}
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
