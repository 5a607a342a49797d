package torture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LayerCommon are the options every layer scenario takes.
type LayerCommon struct {
	URL      string // lock store URL
	Register string // URL of the fenced register's store; default URL
	Seed     uint64 // drives the nemesis, work times and keys
	Dir      string // logs go here
	Logf     func(format string, args ...any)
}

func (o *LayerCommon) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// layerProc is one running layer process.
type layerProc struct {
	cfg  LayerConfig
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited and its output was read
}

// layerLine is a line of a layer process's output that is not a client
// event (ready, addr, result).
type layerLine struct {
	op, client, key, state, addr string
	token                        uint64
	t                            int64
}

// layerProcs runs layer processes and gathers what they print.
type layerProcs struct {
	o *LayerCommon

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every new line
	events  map[string][]Event
	lines   []layerLine
	procs   []*layerProc
	nemesis []Event
	killed  map[string]bool
	last    map[string]string // the op of each process's last line
	waited  int               // processes whose end waitAll reported
}

func newLayerProcs(o *LayerCommon) *layerProcs {
	return &layerProcs{o: o, changed: make(chan struct{}), events: map[string][]Event{}, killed: map[string]bool{}, last: map[string]string{}}
}

// spawn starts the running binary as a layer process with cfg.
func (lp *layerProcs) spawn(cfg LayerConfig) (*layerProc, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	p := &layerProc{cfg: cfg, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), LayerEnv+"="+string(b))
	errf, err := os.Create(filepath.Join(lp.o.Dir, cfg.Name+".err"))
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = errf
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		errf.Close()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(lp.o.Dir, cfg.Name+".log"))
	if err != nil {
		errf.Close()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		errf.Close()
		logf.Close()
		return nil, err
	}
	lp.mu.Lock()
	lp.procs = append(lp.procs, p)
	lp.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			logf.WriteString(line + "\n")
			lp.add(cfg.Name, line)
		}
		p.cmd.Wait()
		errf.Close()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// add records one line of a process's output.
func (lp *layerProcs) add(name, line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.last[name] = f[0]
	switch f[0] {
	case "ready":
		if len(f) == 3 {
			t, _ := strconv.ParseInt(f[2], 10, 64)
			lp.lines = append(lp.lines, layerLine{op: "ready", client: f[1], t: t})
		}
	case "addr":
		if len(f) == 3 {
			lp.lines = append(lp.lines, layerLine{op: "addr", client: f[1], addr: f[2]})
		}
	case "result":
		if len(f) == 5 {
			tok, _ := strconv.ParseUint(f[3], 10, 64)
			lp.lines = append(lp.lines, layerLine{op: "result", key: f[1], client: f[2], token: tok, state: f[4], t: now()})
		}
	default:
		ev, err := parseLine(line)
		if err != nil {
			return // a line cut by kill -9
		}
		lp.events[name] = append(lp.events[name], ev)
	}
	close(lp.changed)
	lp.changed = make(chan struct{})
}

// waitFor waits until cond (called with lp.mu held) is true, or limit
// passes; it reports cond's last value.
func (lp *layerProcs) waitFor(limit time.Duration, cond func() bool) bool {
	end := time.NewTimer(limit)
	defer end.Stop()
	for {
		lp.mu.Lock()
		ok := cond()
		ch := lp.changed
		lp.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-end.C:
			lp.mu.Lock()
			defer lp.mu.Unlock()
			return cond()
		}
	}
}

// note records a nemesis event.
func (lp *layerProcs) note(op, client string, t time.Time) {
	lp.mu.Lock()
	lp.nemesis = append(lp.nemesis, Event{Op: op, Client: client, T: t.UnixNano()})
	if op == "kill" {
		lp.killed[client] = true
	}
	lp.mu.Unlock()
}

// kill sends SIGKILL to p, notes it and waits for its end.
func (lp *layerProcs) kill(p *layerProc) {
	p.cmd.Process.Signal(syscall.SIGKILL)
	lp.note("kill", p.cfg.Name, time.Now())
	<-p.done
}

// ready reports whether every name has printed its ready line (lp.mu
// held).
func (lp *layerProcs) readyAll(names []string) bool {
	n := 0
	for _, l := range lp.lines {
		if l.op == "ready" && slices.Contains(names, l.client) {
			n++
		}
	}
	return n >= len(names)
}

// stopAll sends SIGTERM to every live process and waits for them, killing
// those still running after grace.
func (lp *layerProcs) stopAll(grace time.Duration) {
	lp.mu.Lock()
	procs := slices.Clone(lp.procs)
	lp.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	lp.waitAll(grace)
}

// waitAll waits for every process to exit, killing those still running
// after grace.
func (lp *layerProcs) waitAll(grace time.Duration) {
	lp.mu.Lock()
	procs := slices.Clone(lp.procs)
	lp.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-t.C:
			t.Reset(0)
			p.cmd.Process.Signal(syscall.SIGKILL)
			lp.note("kill", p.cfg.Name, time.Now())
			<-p.done
			lp.o.logf("layer process %s did not finish; killed", p.cfg.Name)
		}
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var b bytes.Buffer
	for _, ev := range lp.nemesis {
		b.WriteString(Format(ev) + "\n")
	}
	os.WriteFile(filepath.Join(lp.o.Dir, "nemesis.log"), b.Bytes(), 0o644)
	for _, p := range procs[lp.waited:] {
		if st, err := os.Stat(filepath.Join(lp.o.Dir, p.cfg.Name+".err")); err == nil && st.Size() > 0 {
			lp.o.logf("layer process %s wrote %d bytes to stderr (%s)", p.cfg.Name, st.Size(), filepath.Join(lp.o.Dir, p.cfg.Name+".err"))
		}
	}
	lp.waited = len(procs)
}

// check runs [Check] on the client events gathered so far.
func (lp *layerProcs) check(bound time.Duration) *Report {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	var logs [][]Event
	for _, evs := range lp.events {
		logs = append(logs, evs)
	}
	return Check(logs, slices.Clone(lp.nemesis), bound)
}

// Percentile returns the p-th percentile (0 < p ≤ 1) of ds, or 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func layerName(prefix string, i, incarnation int) string {
	return fmt.Sprintf("%s%d.%d", prefix, i, incarnation)
}
