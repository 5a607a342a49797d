package redislock

import (
	"testing"
	"time"
)

func TestKeys_EscapeBracesAndBackslashesOnly(t *testing.T) {
	for _, tc := range []struct{ key, lock string }{
		{"orders", "dlock:{orders}"},
		{"a{b", "dlock:{a{b}"},
		{"a}b", `dlock:{a\x7db}`},
		{`a\b`, `dlock:{a\x5cb}`},
		{`\x7d`, `dlock:{\x5cx7d}`},
		{"\x00\xff", "dlock:{\x00\xff}"},
	} {
		lk, fk := keys("dlock:", tc.key)
		if lk != tc.lock || fk != tc.lock+":fence" {
			t.Errorf("keys(%q) = %q, %q; want %q", tc.key, lk, fk, tc.lock)
		}
	}
}

func TestMillis_RoundsUp(t *testing.T) {
	for d, want := range map[int64]int64{1: 1, 999_999: 1, 1_000_000: 1, 1_000_001: 2, 2_500_000_000: 2500} {
		if got := millis(time.Duration(d)); got != want {
			t.Errorf("millis(%dns) = %d, want %d", d, got, want)
		}
	}
}
