// Command http-resource serialises the deposits to one account across every
// copy of a service, while other accounts proceed in parallel. Each request's
// lock has a fencing token (echoed in the Dlock-Token header), and the store
// refuses a write with a smaller token than the last it accepted.
//
//	go run ./examples/http-resource        # and DLOCK_URL=redis://127.0.0.1:16379 for several copies
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/httpmw"
)

type options struct {
	url, id, addr string        // the store ("" means mem://), this replica's name, where to listen
	wait, work    time.Duration // how long a request waits for a busy account; how long a deposit takes
}

func main() {
	o := options{url: os.Getenv("DLOCK_URL"), wait: 2 * time.Second, work: 500 * time.Millisecond}
	host, _ := os.Hostname()
	flag.StringVar(&o.id, "id", fmt.Sprintf("%s/%d", host, os.Getpid()), "this replica's name")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:0", "address to serve on")
	duration := flag.Duration("duration", 0, "stop after this long (default: at Ctrl-C)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		ctx, stop = context.WithTimeout(ctx, *duration)
		defer stop()
	}
	if err := run(ctx, os.Stdout, o); err != nil {
		log.Fatal(err)
	}
}

// balances stands for the database. It keeps, per account, the balance and
// the largest token that wrote it, and refuses writes with smaller tokens —
// in SQL: UPDATE accounts SET balance = balance + $1, fence = $2 WHERE id = $3 AND fence <= $2.
type balances struct {
	mu      sync.Mutex
	balance map[string]int64
	fence   map[string]uint64
}

func (b *balances) deposit(id string, token uint64, amount int64) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if token < b.fence[id] {
		return 0, fmt.Errorf("stale token %d: %s was written with token %d", token, id, b.fence[id])
	}
	b.fence[id] = token
	b.balance[id] += amount
	return b.balance[id], nil
}

// run serves until ctx ends.
func run(ctx context.Context, out io.Writer, o options) error {
	logf := log.New(out, o.id+"  ", log.Ltime|log.Lmicroseconds|log.Lmsgprefix).Printf
	if o.url == "" {
		o.url = "mem://"
		fmt.Fprintln(out, "in-memory store, this process only: set DLOCK_URL (e.g. redis://127.0.0.1:16379) to run several copies")
	}
	fmt.Fprintln(out, "store:", backends.Redact(o.url))
	locker, err := backends.OpenURL(ctx, o.url)
	if err != nil {
		return err
	}
	defer locker.Close()
	db := &balances{balance: map[string]int64{}, fence: map[string]uint64{}}
	deposit := func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		token, _ := httpmw.TokenFrom(r.Context()) // the account's lock is held: fence the write with its token
		amount, err := strconv.ParseInt(r.URL.Query().Get("amount"), 10, 64)
		if err != nil {
			http.Error(w, "amount: want an integer", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(o.work): // the slow part: other deposits to this account wait
		case <-r.Context().Done(): // the client left, or the lock was lost
			return
		}
		balance, err := db.deposit(id, token, amount)
		if err != nil {
			logf("deposit %+d to %s: token %d refused: %v", amount, id, token, err)
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		logf("deposit %+d to %s: token %d, balance %d", amount, id, token, balance)
		fmt.Fprintf(w, "%s: balance %d (token %d)\n", id, balance, token)
	}
	serial := httpmw.New(locker, &httpmw.Options{PathValue: "id", KeyPrefix: "example/accounts/", Wait: o.wait, TokenHeader: "Dlock-Token"})
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/{id}/deposit", serial(http.HandlerFunc(deposit)))
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	logf("serving on http://%s — try: curl -i -X POST 'http://%[1]s/accounts/alice/deposit?amount=10'", ln.Addr())
	<-ctx.Done()
	return srv.Shutdown(context.Background()) // waits for the requests in flight
}
