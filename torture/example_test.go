package torture_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/dlockgo/dlock/torture"
)

// Check merges the logs of the clients and of the nemesis. Here client b
// took the key while a was frozen; a woke up, its write was rejected by the
// fenced register, and it was told of the loss 3ns after its SIGCONT.
func ExampleCheck() {
	a, _ := torture.Parse(strings.NewReader(`enter k a 1 0 10
write k a 1 101 102 rejected
lost k a 1 103
exit k a 1 104
`))
	b, _ := torture.Parse(strings.NewReader(`enter k b 2 40 50
write k b 2 51 52 ok
exit k b 2 110
`))
	nemesis, _ := torture.Parse(strings.NewReader("stop a 20\ncont a 100\n"))
	r := torture.Check([][]torture.Event{a, b}, nemesis, 50*time.Millisecond)
	fmt.Println("acquisitions", r.Acquisitions, "overlaps", r.Overlaps, "pause overlaps", r.PauseOverlaps)
	fmt.Println("rejected", r.Rejected, "stale accepted", r.StaleAccepted, "p99 signal", r.P99Signal())
	// Output:
	// acquisitions 2 overlaps 0 pause overlaps 1
	// rejected 1 stale accepted 0 p99 signal 3ns
}

// A Proxy between a client and a server: a cut holds the client's bytes
// back (no error, no reply) until the proxy heals.
func ExampleNewProxy() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() { // an echo server
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	p, err := torture.NewProxy(ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	buf := make([]byte, 5)
	c.Write([]byte("hello"))
	io.ReadFull(c, buf)
	fmt.Println(string(buf))

	p.Cut()
	c.Write([]byte("again"))
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(buf)
	fmt.Println("reply during the cut:", !errors.Is(err, os.ErrDeadlineExceeded))

	p.Heal()
	c.SetReadDeadline(time.Time{})
	io.ReadFull(c, buf)
	fmt.Println(string(buf))
	// Output:
	// hello
	// reply during the cut: false
	// again
}
