package lock_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/driver"
)

func TestWaitFree_ReturnsWhenTheHolderReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		ctx := context.Background()
		lk, err := f.other.Acquire(ctx, "k", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := f.l.(lock.Waiter)
		if !ok {
			t.Fatal("the Locker from lock.New does not implement lock.Waiter")
		}
		done := make(chan error)
		go func() { done <- w.WaitFree(ctx, "k") }()
		time.Sleep(time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("WaitFree returned %v while the key was held", err)
		default:
		}
		lk.Release(ctx)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// noWait hides the store's driver.Waiter.
type noWait struct{ driver.Backend }

func TestWaitFree_UnsupportedWithoutAStoreWaiter(t *testing.T) {
	s, _ := memlock.NewStore(nil)
	l, err := lock.New(noWait{s.Backend()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = l.(lock.Waiter).WaitFree(context.Background(), "k")
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want errors.ErrUnsupported", err)
	}
	if err := l.(lock.Waiter).WaitFree(context.Background(), ""); !errors.Is(err, lock.ErrEmptyKey) {
		t.Fatalf("err = %v, want ErrEmptyKey", err)
	}
}
