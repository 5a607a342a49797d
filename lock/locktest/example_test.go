package locktest_test

import (
	"fmt"
	"testing"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock/driver"
	"github.com/dlockgo/dlock/lock/locktest"
)

// A store's whole conformance test.
func ExampleRun() {
	var t *testing.T // in a real test, the *testing.T of TestConformance
	store, _ := memlock.NewStore(nil)
	newBackend := func(*testing.T) driver.Backend { return store.Backend() }
	if t != nil {
		locktest.Run(t, newBackend, locktest.Options{})
	}
}

// The checker flags two critical sections that overlap on one key.
func ExampleChecker() {
	c := locktest.NewChecker()
	c.Enter("k", "a", 1)
	c.Enter("k", "b", 2) // b got in while a was inside
	fmt.Println(len(c.Problems()), "problem:", c.Problems()[0])
	// Output: 1 problem: overlap on "k": b (token 2) entered while a (token 1) was inside
}
