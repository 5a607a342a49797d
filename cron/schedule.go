package cron

import (
	"fmt"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// Schedule tells when a job runs: Next returns the first tick strictly after
// t. Every replica must compute the same ticks from the same spec, so ticks
// are absolute times, never relative to when a process started.
type Schedule interface {
	// Next returns the first tick strictly after t, or the zero time when
	// there is none.
	Next(t time.Time) time.Time
}

// parser accepts standard five-field specs, an optional leading seconds
// field, and descriptors (@hourly, @every 10s).
var parser = robfig.NewParser(robfig.SecondOptional | robfig.Minute | robfig.Hour |
	robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Parse parses a cron spec: five fields (minute hour day-of-month month
// day-of-week), or six with a leading seconds field, or a descriptor such as
// @hourly, @daily or @every 10s; a leading CRON_TZ=Zone/Name sets the time
// zone, otherwise loc (nil means UTC) is used.
//
// Unlike robfig/cron, @every schedules are aligned to absolute time
// (multiples of the interval since the zero time.Time: @every 10s ticks at
// :00, :10, :20 …), not to the moment a process started, so that every
// replica agrees on which tick is which; and they may be shorter than a
// second.
func Parse(spec string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	s := strings.TrimSpace(spec)
	if rest, ok := strings.CutPrefix(s, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("cron: bad interval in %q", spec)
		}
		return every(d), nil
	}
	sched, err := parser.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cron: %w", err)
	}
	if ss, ok := sched.(*robfig.SpecSchedule); ok && !strings.HasPrefix(s, "CRON_TZ=") && !strings.HasPrefix(s, "TZ=") {
		ss.Location = loc
	}
	return sched, nil
}

// every is an epoch-aligned constant interval.
type every time.Duration

func (e every) Next(t time.Time) time.Time {
	d := time.Duration(e)
	return t.Truncate(d).Add(d)
}

// interval estimates the time between two ticks of s after t.
func interval(s Schedule, t time.Time) time.Duration {
	if e, ok := s.(every); ok {
		return time.Duration(e)
	}
	a := s.Next(t)
	b := s.Next(a)
	if a.IsZero() || b.IsZero() {
		return 0
	}
	return b.Sub(a)
}
