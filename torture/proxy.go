package torture

import (
	"net"
	"sync"
	"time"
)

// Proxy is an in-process TCP proxy on 127.0.0.1 in front of one store
// address, through which the nemesis injects network faults: a partition
// ([Proxy.Cut]), closed connections ([Proxy.Reset]), latency
// ([Proxy.SetDelay]) and lost replies ([Proxy.DropReplies]).
//
// Each accepted connection is paired with a new connection to the
// upstream. Bytes are copied in chunks as they arrive; faults apply to
// chunks, not to protocol messages.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	cond  *sync.Cond // signalled when cut or closed changes
	conns map[*pair]struct{}
	cut   bool
	drop  bool
	delay time.Duration
	done  bool
	wg    sync.WaitGroup
}

type pair struct {
	client, server net.Conn
}

func (p *pair) close() {
	p.client.Close()
	p.server.Close()
}

// NewProxy listens on a free loopback port and forwards every connection
// to upstream (host:port).
func NewProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[*pair]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port; give it to clients in place of the
// upstream's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut blackholes the proxy: new connections are accepted but get nothing
// through (and are not dialled upstream) and existing connections fall
// silent in both directions, without being closed, until [Proxy.Heal]. This
// is what a partition looks like to both ends: no error, no reply.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// Heal ends a cut and lost replies: held connections resume (bytes that
// were read while cut are delivered), new connections go through.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut, p.drop = false, false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Reset closes every open connection (both sides); new connections are
// accepted as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	for c := range p.conns {
		c.close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

// SetDelay delays every chunk, in both directions, by d (0: none).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// DropReplies, when on, forwards bytes from clients to the server but
// discards the server's bytes to the clients: requests are applied, their
// replies lost. Turning it off closes every connection (their byte
// streams lost data, so they cannot be trusted again) and lets new ones
// through normally.
func (p *Proxy) DropReplies(on bool) {
	p.mu.Lock()
	p.drop = on
	p.mu.Unlock()
	if !on {
		p.Reset()
	}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.done = true
	p.cond.Broadcast()
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// waitUncut blocks while the proxy is cut; false when it was closed.
func (p *Proxy) waitUncut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.cut && !p.done {
		p.cond.Wait()
	}
	return !p.done
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	// A connection made during a cut hangs (a SYN into the void would
	// time out; here the handshake completes but nothing comes back).
	if !p.waitUncut() {
		c.Close()
		return
	}
	s, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pr := &pair{client: c, server: s}
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		pr.close()
		return
	}
	p.conns[pr] = struct{}{}
	p.mu.Unlock()
	p.wg.Add(2)
	go p.pipe(pr, c, s, false)
	go p.pipe(pr, s, c, true)
}

// pipe copies src to dst; reply is true for the server-to-client way.
func (p *Proxy) pipe(pr *pair, src, dst net.Conn, reply bool) {
	defer p.wg.Done()
	defer func() {
		pr.close()
		p.mu.Lock()
		delete(p.conns, pr)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitUncut() {
				return
			}
			p.mu.Lock()
			delay, drop := p.delay, p.drop && reply
			p.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay) // the fault itself: latency
			}
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil { // EOF or reset: both ways end (the stores' protocols do not half-close)
			return
		}
	}
}
