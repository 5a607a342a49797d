package bench

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// contender takes and releases one lock: one cycle.
type contender struct {
	name  string
	cycle func(ctx context.Context, key string) error
}

func runID() string { return fmt.Sprint(time.Now().UnixNano()) }

// benchEach measures each contender on its own, on one key of its own (for
// -benchmem).
func benchEach(b *testing.B, cs []contender) {
	run := runID()
	for _, c := range cs {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			key := run + "/" + c.name
			b.ReportAllocs()
			for b.Loop() {
				if err := c.cycle(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchInterleaved runs one cycle of each contender per iteration, in
// rotating order, so that the loopback's swings hit all of them alike, and
// reports each one's ns per cycle and the first contender's ratios to the
// others. Each contender uses one key, or a new key every cycle when
// distinct is set.
func benchInterleaved(b *testing.B, cs []contender, distinct bool) {
	run := runID()
	ctx := context.Background()
	total := make([]time.Duration, len(cs))
	n := 0
	for b.Loop() {
		for j := range cs {
			i := (n + j) % len(cs)
			key := run + "/" + cs[i].name
			if distinct {
				key += "/" + strconv.Itoa(n)
			}
			start := time.Now()
			if err := cs[i].cycle(ctx, key); err != nil {
				b.Fatalf("%s: %v", cs[i].name, err)
			}
			total[i] += time.Since(start)
		}
		n++
	}
	per := func(i int) float64 { return float64(total[i].Nanoseconds()) / float64(n) }
	for i, c := range cs {
		b.ReportMetric(per(i), c.name+"-ns/cycle")
	}
	for i, c := range cs[1:] {
		b.ReportMetric(per(0)/per(i+1), cs[0].name+"/"+c.name)
	}
}
