package cron

import (
	"context"

	robfig "github.com/robfig/cron/v3"

	"github.com/dlockgo/dlock/lock"
)

// Job returns a robfig/cron Job that runs fn as one tick of the job named
// name, for users who keep their own *robfig.Cron:
//
//	job, err := sched.Job("report", "0 * * * *", fn, nil)
//	c.AddJob("0 * * * *", job)
//
// spec must be the spec the Job is added with; it lets every replica name
// the tick the same way (the scheduled time nearest to the moment robfig
// runs the Job). With this adapter robfig keeps the time, so @every specs
// tick relative to each process's start; prefer [Scheduler.Run] for them.
// The Job blocks until the tick's lock has been held for MinHold.
func (s *Scheduler) Job(name, spec string, fn func(ctx context.Context) error, opts *JobOptions) (robfig.Job, error) {
	j, err := s.newJob(name, spec, fn, opts)
	if err != nil {
		return nil, err
	}
	return robfig.FuncJob(func() {
		now := s.opts.Now()
		half := interval(j.sched, now) / 2
		s.runTick(context.Background(), j, j.sched.Next(now.Add(-half)))
	}), nil
}

// SingletonJob is [Scheduler.Job] on a Scheduler with default options.
func SingletonJob(locker lock.Locker, name, spec string, fn func(ctx context.Context) error, opts *JobOptions) (robfig.Job, error) {
	s, err := New(locker, nil)
	if err != nil {
		return nil, err
	}
	return s.Job(name, spec, fn, opts)
}
