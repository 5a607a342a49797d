package bench

import (
	"testing"

	"github.com/dlockgo/dlock/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
