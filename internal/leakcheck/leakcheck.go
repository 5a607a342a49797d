// Package leakcheck fails a test binary that leaves goroutines behind.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and then checks, polling for up to five seconds, that
// no goroutine started by them is still running. It exits the process.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := Check(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// Check polls until only the goroutines of the runtime and the test
// framework remain, or wait has passed, in which case it returns an error
// listing the stacks of the others.
func Check(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		leaked := interesting()
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leakcheck: %d goroutine(s) still running after the tests:\n\n%s",
				len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ignored holds substrings of stacks that belong to the runtime, the test
// framework, or process-wide machinery that is not ours to stop. After
// m.Run returns, every other goroutine is a leak.
var ignored = []string{
	"leakcheck.interesting(", // this goroutine
	"testing.(*M).Run(",      // the main test goroutine
	"testing.Main(",
	"os/signal.",          // signal.Notify's process-wide loop
	"runtime.ensureSigM(", // ditto
	"testing.(*F).Fuzz(",  // fuzzing workers' coordinator
}

func interesting() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if g != "" && !isIgnored(g) {
			out = append(out, g)
		}
	}
	return out
}

func isIgnored(stack string) bool {
	for _, ig := range ignored {
		if strings.Contains(stack, ig) {
			return true
		}
	}
	return false
}
