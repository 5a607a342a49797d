package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/dlockgo/dlock/backends"
	"github.com/dlockgo/dlock/lock"
)

const lsHelp = `Usage: dlock ls [--prefix P] [--json]

Lists the locks held now in the store: key, holder identity, fencing token
and the TTL left, sorted by key. Redis (SCAN), etcd (a range read) and
mem:// can list; mem:// lives in one process, so dlock ls always finds it
empty. PostgreSQL takes its advisory locks on a hash of the key: it lists
only the locks of holders that record themselves, i.e. that were started
with ?dlock_record_holders=true in their URL (and the TTL shown is 0 unless
they also use ?dlock_enforce_ttl=true); without it in the URL of ls, ls
exits 69.

Examples:
  dlock ls --url redis://10.0.0.5:6379
  dlock ls --prefix nightly --json | jq -r '.[].key'

JSON: an array of {"key", "holder", "token", "ttl_ms"}; ttl_ms is 0 when the
store enforces no TTL.

` + exitTable + "\n"

type lsEntry struct {
	Key    string `json:"key"`
	Holder string `json:"holder"`
	Token  uint64 `json:"token"`
	TTLms  int64  `json:"ttl_ms"`
}

func (e env) ls(args []string) int {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	var c common
	c.register(fs)
	prefix := fs.String("prefix", "", "list only the keys that start with this")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if code := e.parse(fs, args, lsHelp); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return e.usageErr("ls", "unexpected arguments")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, cfg, err := e.open(ctx, &c)
	if err != nil {
		return e.fail("ls", cfg, exitStore, err)
	}
	defer l.Close()
	lister, ok := l.(lock.Lister)
	if !ok {
		return e.fail("ls", cfg, exitStore, errors.ErrUnsupported)
	}
	entries := []lsEntry{}
	err = lister.List(ctx, *prefix, func(key string, h lock.Holder) bool {
		entries = append(entries, lsEntry{Key: key, Holder: h.Identity, Token: h.Token, TTLms: h.TTL.Milliseconds()})
		return true
	})
	if errors.Is(err, errors.ErrUnsupported) {
		why := ""
		if cfg.Store == backends.Postgres {
			why = " without ?dlock_record_holders=true in the URL"
		}
		return e.fail("ls", cfg, exitStore, fmt.Errorf("the %s store cannot list held locks%s", cfg.Store, why))
	}
	if err != nil {
		return e.fail("ls", cfg, exitStore, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			return e.fail("ls", cfg, exitStore, err)
		}
		return 0
	}
	if cfg.Store == backends.Memory && !c.quiet {
		fmt.Fprintln(e.stderr, "dlock ls: mem:// is empty in a new process")
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tHOLDER\tTOKEN\tTTL")
	for _, en := range entries {
		ttl := "-"
		if en.TTLms > 0 {
			ttl = (time.Duration(en.TTLms) * time.Millisecond).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", printable(en.Key), printable(en.Holder), en.Token, ttl)
	}
	tw.Flush()
	return 0
}

// printable returns s unchanged when it is plain printable text, else
// quoted with Go escapes.
func printable(s string) string {
	if s == "" {
		return "-"
	}
	for _, r := range s {
		if r == utf8.RuneError || r < ' ' || r == 0x7f || r == ' ' || r == '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}
