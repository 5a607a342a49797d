package backends_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dlockgo/dlock/backends"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		want backends.Config
	}{
		{"mem://", backends.Config{Store: "mem"}},
		{"mem:", backends.Config{Store: "mem"}},
		{"mem://?identity=a", backends.Config{Store: "mem", Identity: "a"}},
		{"redis://127.0.0.1:16379", backends.Config{Store: "redis", Addrs: []string{"127.0.0.1:16379"}}},
		{"redis://:s3cret@127.0.0.1:6379/2?prefix=app:&identity=host-a", backends.Config{
			Store: "redis", Addrs: []string{"127.0.0.1:6379"}, Password: "s3cret", RedisDB: 2, Prefix: "app:", Identity: "host-a"}},
		{"rediss://u:p@h:6380", backends.Config{Store: "redis", Addrs: []string{"h:6380"}, Username: "u", Password: "p", TLS: true}},
		{"redis://a:1,b:2,c:3", backends.Config{Store: "redis", Addrs: []string{"a:1", "b:2", "c:3"}}},
		{"redis://s1:26379,s2:26379?master=mymaster", backends.Config{Store: "redis", Addrs: []string{"s1:26379", "s2:26379"}, RedisMaster: "mymaster"}},
		{"redis://[::1]:6379?cluster=true", backends.Config{Store: "redis", Addrs: []string{"[::1]:6379"}, RedisCluster: true}},
		{"postgres://u:p@127.0.0.1:15432/dlock?sslmode=disable&dlock_enforce_ttl=true&dlock_sessions=3&dlock_namespace=billing", backends.Config{
			Store: "postgres", Addrs: []string{"127.0.0.1:15432"}, Username: "u", Password: "p",
			PostgresDSN: "postgres://u:p@127.0.0.1:15432/dlock?sslmode=disable", PostgresEnforceTTL: true, PostgresSessions: 3, Prefix: "billing"}},
		{"postgresql://h/db", backends.Config{Store: "postgres", Addrs: []string{"h"}, PostgresDSN: "postgres://h/db"}},
		{"etcd://127.0.0.1:12379", backends.Config{Store: "etcd", Addrs: []string{"127.0.0.1:12379"}}},
		{"etcd://root:pw@h1:2379,h2:2379?prefix=/x/&tls=true&dial_timeout=2s", backends.Config{
			Store: "etcd", Addrs: []string{"h1:2379", "h2:2379"}, Username: "root", Password: "pw", Prefix: "/x/", TLS: true, DialTimeout: 2 * time.Second}},
		{"REDIS://h:1", backends.Config{Store: "redis", Addrs: []string{"h:1"}}},
		{"dynamodb:///", backends.Config{Store: "dynamodb", TLS: true}},
		{"dynamodb:///locks.prod?region=eu-west-1&prefix=billing/", backends.Config{
			Store: "dynamodb", TLS: true, DynamoDBTable: "locks.prod", DynamoDBRegion: "eu-west-1", Prefix: "billing/"}},
		{"dynamodb://127.0.0.1:18000/dlock_test?tls=false&create_table=true&identity=a", backends.Config{
			Store: "dynamodb", Addrs: []string{"127.0.0.1:18000"}, DynamoDBTable: "dlock_test", DynamoDBCreateTable: true, Identity: "a"}},
		{"dynamodb://AKIDEXAMPLE:s3cret@vpce-1.dynamodb.eu-west-1.vpce.amazonaws.com?region=eu-west-1", backends.Config{
			Store: "dynamodb", Addrs: []string{"vpce-1.dynamodb.eu-west-1.vpce.amazonaws.com"}, Username: "AKIDEXAMPLE", Password: "s3cret",
			TLS: true, DynamoDBRegion: "eu-west-1"}},
		{"zk://127.0.0.1:12181", backends.Config{Store: "zk", Addrs: []string{"127.0.0.1:12181"}}},
		{"zk://h1:2181,h2:2181/app/locks/?session_timeout=2s&max_session_timeout=30s&identity=a", backends.Config{
			Store: "zk", Addrs: []string{"h1:2181", "h2:2181"}, Prefix: "/app/locks", Identity: "a",
			ZooKeeperSessionTimeout: 2 * time.Second, ZooKeeperMaxSessionTimeout: 30 * time.Second}},
		{"zk://h:1?prefix=/x&advisory_ttl=true", backends.Config{Store: "zk", Addrs: []string{"h:1"}, Prefix: "/x", ZooKeeperAdvisoryTTL: true}},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := backends.ParseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("ParseURL =\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
}

func TestParseURL_BadURLsAreTypedErrorsWithoutPasswords(t *testing.T) {
	bad := []string{
		"",
		"localhost:6379",
		"ftp://h:1",
		"redis://",
		"redis://:hunter2@h:99999",
		"redis://:hunter2@h:1/notanumber",
		"redis://:hunter2@h:1?cluster=maybe",
		"redis://:hunter2@h:1?color=blue",
		"postgres://u:hunter2@/db",
		"postgres://u:hunter2@h/db?dlock_sessions=0",
		"postgres://u:hunter2@h/db?dlock_enforce_ttl=perhaps",
		"etcd://u:hunter2@h:1?dial_timeout=-1s",
		"etcd://u:hunter2@?tls=true",
		"etcd://u:hunter2@h:1,:2",
		"mem://?shards=4",
		"redis://u:hunter2@[::1:6379",
		"postgres://u@h/db?password=hunter2&dlock_sessions=x",
		"dynamodb://k:hunter2@a:1,b:2/t",
		"dynamodb://k:hunter2@h:1/no/such/table",
		"dynamodb://k:hunter2@h:1/ab",
		"dynamodb://k:hunter2@h:1/t?tls=maybe",
		"dynamodb://k:hunter2@/dlock?tls=false",
		"dynamodb://k:hunter2@h:1/dlock?create_table=yes",
		"dynamodb://k:hunter2@h:1/dlock?consistent=false",
		"dynamodb://:hunter2@h:1/dlock",
		"dynamodb://k@h:1/dlock",
		"zk://",
		"zk://u:hunter2@h:1",
		"zk://h:1/a?prefix=/b",
		"zk://h:1?session_timeout=0s",
		"zk://h:1?max_session_timeout=soon",
		"zk://h:1?tls=true",
		"zk://h:1?advisory_ttl=sometimes",
	}
	for _, raw := range bad {
		t.Run(raw, func(t *testing.T) {
			_, err := backends.ParseURL(raw)
			if !errors.Is(err, backends.ErrInvalidURL) {
				t.Fatalf("ParseURL = %v, want ErrInvalidURL", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://:pw@h:1/0", "redis://:xxxxx@h:1/0"},
		{"postgres://u:pw@h/db?sslmode=disable", "postgres://u:xxxxx@h/db?sslmode=disable"},
		{"postgres://u@h/db?password=pw&x=1", "postgres://u@h/db?password=xxxxx&x=1"},
		{"etcd://u:p:w@h1:1,h2:2", "etcd://u:xxxxx@h1:1,h2:2"},
		{"redis://h:1", "redis://h:1"},
		{"not a url", "not a url"},
	}
	for _, tc := range tests {
		if got := backends.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseURL: no panics, and an error never shows the password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"mem://", "redis://:pw@h:1/0", "etcd://u:pw@a:1,b:2?prefix=/x", "postgres://u:pw@h/db?password=pw", "rediss://x", "redis://[::1]:1",
		"dynamodb://k:pw@127.0.0.1:18000/dlock?tls=false&region=us-east-1", "dynamodb:///t.x-y_z?create_table=1", "zk://a:1,b:2/dlock?session_timeout=1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := backends.ParseURL(raw)
		if err != nil {
			if !errors.Is(err, backends.ErrInvalidURL) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if cfg.Password != "" && len(cfg.Password) > 3 && strings.Contains(backends.Redact(raw), cfg.Password) &&
			!strings.Contains(strings.Replace(raw, cfg.Password, "", 1), cfg.Password) {
			t.Fatalf("Redact(%q) still shows the password %q", raw, cfg.Password)
		}
	})
}
