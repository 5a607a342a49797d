package mock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stretchr/testify/mock"

	"github.com/dlockgo/dlock/lock"
	lockmock "github.com/dlockgo/dlock/lock/mock"
)

// runReport is the code under test: it runs only when it gets the lock.
func runReport(ctx context.Context, l lock.Locker) (string, error) {
	lk, err := l.Acquire(ctx, "report", time.Minute)
	if errors.Is(err, lock.ErrLockNotAcquired) {
		return "skipped", nil
	}
	if err != nil {
		return "", err
	}
	defer lk.Release(ctx)
	return fmt.Sprintf("ran with token %d", lk.Token()), nil
}

func Example() {
	held := new(lockmock.Lock)
	held.On("Token").Return(uint64(7))
	held.On("Release", mock.Anything).Return(nil)

	l := new(lockmock.Locker)
	l.On("Acquire", mock.Anything, "report", time.Minute).Return(held, nil).Once()
	l.On("Acquire", mock.Anything, "report", time.Minute).Return(nil, lock.ErrLockNotAcquired).Once()

	first, _ := runReport(context.Background(), l)
	second, _ := runReport(context.Background(), l)
	fmt.Println(first)
	fmt.Println(second)
	// Output:
	// ran with token 7
	// skipped
}
