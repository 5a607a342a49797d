// Package httpmw is net/http middleware that serialises requests per
// resource across every replica of a service: requests that touch the same
// account, order or document run one at a time, while different resources
// proceed in parallel.
//
//	mux := http.NewServeMux()
//	serial := httpmw.New(locker, &httpmw.Options{PathValue: "id"})
//	mux.Handle("POST /accounts/{id}/transfers", serial(transfers))
//
// The middleware takes a lock named by the request's resource key before
// calling the handler and holds it — refreshed by [lock.Hold] — until the
// handler returns or panics. The request's context is cancelled, with a
// cause wrapping [lock.ErrLockNotHeld], if the lock is lost meanwhile; the
// handler should stop writing then. The lock's fencing token is available
// to the handler ([TokenFrom]) and can be echoed in a response header, so
// that writes further down can be fenced.
//
// Responses the middleware writes itself, unless [Options.ErrorHandler]
// says otherwise:
//
//   - 409 Conflict (Options.BusyStatus) with Retry-After when the resource
//     is busy: at once by default, or after waiting up to Options.Wait;
//   - 400 Bad Request when the key cannot be found in the request or is
//     not a valid lock key;
//   - 503 Service Unavailable when the lock store fails (with no internal
//     details in the body; they go to the logger).
//
// A client that goes away while its request waits stops the wait, and
// nothing is left locked. Safe methods (GET, HEAD, OPTIONS, TRACE) are
// not locked by default.
package httpmw
