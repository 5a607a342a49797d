package torture_test

import (
	"fmt"
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
