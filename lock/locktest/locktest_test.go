package locktest_test

import (
	"strings"
	"testing"

	"github.com/dlockgo/dlock/internal/leakcheck"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func TestChecker(t *testing.T) {
	tests := []struct {
		name  string
		run   func(c *locktest.Checker)
		wants []string // substrings of the problems, in order
	}{
		{"SequentialSectionsAreFine", func(c *locktest.Checker) {
			c.Enter("k", "a", 1)
			c.Exit("k", "a")
			c.Enter("k", "b", 2)
			c.Exit("k", "b")
		}, nil},
		{"DifferentKeysMayOverlap", func(c *locktest.Checker) {
			c.Enter("k1", "a", 1)
			c.Enter("k2", "b", 2)
		}, nil},
		{"OverlapIsFlagged", func(c *locktest.Checker) {
			c.Enter("k", "a", 1)
			c.Enter("k", "b", 2)
		}, []string{"overlap"}},
		{"TokenRegressionIsFlagged", func(c *locktest.Checker) {
			c.Enter("k", "a", 5)
			c.Exit("k", "a")
			c.Enter("k", "b", 5)
		}, []string{"token regression"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := locktest.NewChecker()
			tc.run(c)
			got := c.Problems()
			if len(got) != len(tc.wants) {
				t.Fatalf("problems = %q, want %d", got, len(tc.wants))
			}
			for i, w := range tc.wants {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}
