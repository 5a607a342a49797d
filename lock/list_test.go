package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends/memlock"
	"github.com/dlockgo/dlock/lock"
	"github.com/dlockgo/dlock/lock/locktest"
)

func TestList_ForwardsToTheStoreWithIdentities(t *testing.T) {
	ctx := context.Background()
	s, err := memlock.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.NewLocker(&lock.Options{Identity: "host-a/1"})
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.Acquire(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []lock.Holder
	if err := l.(lock.Lister).List(ctx, "", func(key string, h lock.Holder) bool {
		got = append(got, h)
		return key == "k"
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Identity != "host-a/1" || got[0].Token != lk.Token() {
		t.Errorf("List = %+v, want k held by host-a/1 with token %d", got, lk.Token())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.(lock.Lister).List(ctx, "", func(string, lock.Holder) bool { return true }); !errors.Is(err, lock.ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}

	// A store that cannot list.
	plain, err := lock.New(locktest.NewFaulty(s.Backend()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.(lock.Lister).List(ctx, "", func(string, lock.Holder) bool { return true }); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("List on a store without driver.Lister = %v, want ErrUnsupported", err)
	}
}
