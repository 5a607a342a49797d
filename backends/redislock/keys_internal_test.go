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

func TestUnkey_InvertsKeysAndRejectsOtherKeys(t *testing.T) {
	for _, k := range []string{"a", `\`, "}", `\x5c}`, "{x}", "\x00\xff", `a\x7db`} {
		lk, fk := keys("p:", k)
		if got, ok := unkey("p:", lk); !ok || got != k {
			t.Errorf("unkey(keys(%q)) = %q, %v", k, got, ok)
		}
		if _, ok := unkey("p:", fk); ok {
			t.Errorf("unkey accepted the fence key %q", fk)
		}
	}
	for _, rk := range []string{"q:{a}", "p:{a}:once", `p:{a\b}`, "p:a"} {
		if got, ok := unkey("p:", rk); ok {
			t.Errorf("unkey(%q) = %q, want rejected", rk, got)
		}
	}
}
