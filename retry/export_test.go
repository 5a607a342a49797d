package retry

// SetRand makes the Acquire calls that use o draw their waits with f, which
// must return a uniform value in [0, n).
func SetRand(o *Options, f func(n int64) int64) { o.rand = f }
