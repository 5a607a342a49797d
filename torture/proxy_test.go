package torture_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/dlockgo/dlock/torture"
)

// echoServer answers each line with the same line and counts the lines it
// received.
func echoServer(t *testing.T) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					got <- sc.Text()
					if _, err := c.Write([]byte(sc.Text() + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), got
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
	t.Helper()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	s, err := r.ReadString('\n')
	c.SetReadDeadline(time.Time{})
	return s, err
}

func TestProxy(t *testing.T) {
	up, got := echoServer(t)
	p, err := torture.NewProxy(up)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if s, err := roundTrip(t, c, r, "a", 5*time.Second); err != nil || s != "a\n" {
		t.Fatalf("through: %q %v", s, err)
	}
	<-got

	// Cut: nothing reaches the server, no reply, the connection stays open.
	p.Cut()
	if _, err := roundTrip(t, c, r, "b", 50*time.Millisecond); err == nil {
		t.Fatal("reply through a cut")
	}
	select {
	case s := <-got:
		t.Fatalf("server got %q through a cut", s)
	default:
	}
	// Heal: the held bytes go through.
	p.Heal()
	if s, err := r.ReadString('\n'); err != nil || s != "b\n" {
		t.Fatalf("after heal: %q %v", s, err)
	}
	<-got

	// Lost replies: the server gets the request, the client no reply.
	p.DropReplies(true)
	if _, err := roundTrip(t, c, r, "c", 50*time.Millisecond); err == nil {
		t.Fatal("reply while dropping replies")
	}
	if s := <-got; s != "c" {
		t.Fatalf("server got %q", s)
	}
	p.DropReplies(false) // resets the connection
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection survived DropReplies(false)")
	}

	// A new connection works; Reset closes it; delay delays.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	p.SetDelay(20 * time.Millisecond)
	t0 := time.Now()
	if s, err := roundTrip(t, c2, r2, "d", 5*time.Second); err != nil || s != "d\n" {
		t.Fatalf("delayed: %q %v", s, err)
	}
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Errorf("round trip %v with 20ms each way", d)
	}
	<-got
	p.SetDelay(0)
	p.Reset()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r2.ReadString('\n'); err == nil {
		t.Fatal("connection survived Reset")
	}
}
