package memlock_test

import (
	"testing"

	"github.com/dlockgo/dlock/once/oncetest"
)

func TestRecords_Conformance(t *testing.T) {
	oncetest.Run(t, newStore(t).Records(), oncetest.Options{})
}
