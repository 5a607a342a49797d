// Package storeutil holds the few lines every store package needs the same
// way.
package storeutil

import (
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

// NewLocker returns lock.New(b, opts), closing b when that fails (invalid
// lock options), so that a store's New leaves nothing open behind an error.
func NewLocker(b driver.Backend, opts *lock.Options) (lock.Locker, error) {
	l, err := lock.New(b, opts)
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return l, nil
}
