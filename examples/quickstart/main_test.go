package main

import (
	"testing"

	"github.com/dlockgo/dlock/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestRun_OneHolderAtATime(t *testing.T) {
	if err := run(4, 3); err != nil {
		t.Fatal(err)
	}
}
