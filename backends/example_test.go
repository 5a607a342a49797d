package backends_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dlockgo/dlock/backends"
)

// Programs take the store from their configuration; the library itself
// never reads the environment.
func ExampleOpenURL() {
	url := os.Getenv("DLOCK_URL") // e.g. redis://127.0.0.1:16379, etcd://h1:2379,h2:2379
	if url == "" {
		url = "mem://"
	}
	locker, err := backends.OpenURL(context.Background(), url)
	if err != nil {
		fmt.Println(err) // never shows the password
		return
	}
	defer locker.Close()
	lk, err := locker.Acquire(context.Background(), "example", time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lk.Release(context.Background())
	fmt.Println("locked; token > 0:", lk.Token() > 0)
	// Output: locked; token > 0: true
}

func ExampleParseURL() {
	cfg, err := backends.ParseURL("redis://:s3cret@10.0.0.5:6379/2?prefix=billing:&identity=worker-7")
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.Store, cfg.Addrs, cfg.RedisDB, cfg.Prefix, cfg.Identity)

	_, err = backends.ParseURL("redis://:s3cret@10.0.0.5:99999")
	fmt.Println(err)
	// Output:
	// redis [10.0.0.5:6379] 2 billing: worker-7
	// backends: invalid store URL redis://:xxxxx@10.0.0.5:99999: bad port "99999"
}
