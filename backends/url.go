package backends

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidURL means a store URL that cannot be parsed or names an unknown
// store. Errors wrapping it never contain the URL's password.
var ErrInvalidURL = errors.New("backends: invalid store URL")

// Store kinds, as in [Config.Store].
const (
	Memory    = "mem"
	Redis     = "redis"
	Postgres  = "postgres"
	Etcd      = "etcd"
	ZooKeeper = "zk"
	DynamoDB  = "dynamodb"
)

// ParseURL turns a store URL into a [Config]:
//
//	mem://
//	redis://[user:password@]host:port[,host:port…][/db][?options]
//	rediss://…                      (TLS)
//	postgres://user:password@host:port/database[?options]   (also postgresql://)
//	etcd://[user:password@]host:port[,host:port…][?options]
//	dynamodb://[key_id:secret@][host:port]/[table][?options]
//	zk://host:port[,host:port…][/root][?options]
//
// Options common to every store: identity (stored with each lock), prefix
// (the store's key prefix or namespace). Redis: master (a Sentinel master
// name: the hosts are then Sentinels), cluster=true (force a Cluster client
// for a single seed address). PostgreSQL: dlock_enforce_ttl=true,
// dlock_sessions=N, dlock_namespace=…, dlock_record_holders=true; other
// query parameters are pgx's and are passed on. etcd: tls=true, dial_timeout=5s.
// DynamoDB: region=…, tls=false, create_table=true (see [Config.DynamoDBTable]
// for the rest).
// ZooKeeper: the path is the root znode (or prefix=/root), session_timeout=4s
// (the shortest session), max_session_timeout=40s (the longest),
// advisory_ttl=true; no user information.
//
// Errors wrap [ErrInvalidURL] and show the URL with its password redacted.
func ParseURL(raw string) (*Config, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if s, r, ok := strings.Cut(raw, ":"); ok && s == Memory {
			scheme, rest = s, strings.TrimPrefix(r, "//")
		} else {
			return nil, badURL(raw, "missing scheme://")
		}
	}
	scheme = strings.ToLower(scheme)
	if scheme == Memory {
		u, err := url.Parse("mem://" + rest)
		if err != nil {
			return nil, badURL(raw, "cannot parse")
		}
		cfg := &Config{Store: Memory}
		return cfg, cfg.common(raw, u.Query())
	}

	// Hosts may be a comma-separated list, which net/url refuses; cut it
	// out and parse the rest with a placeholder host.
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	u, err := url.Parse("x://" + userinfo + "placeholder" + tail)
	if err != nil {
		return nil, badURL(raw, "cannot parse")
	}
	cfg := &Config{}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			continue
		}
		if err := checkHostPort(h); err != nil {
			return nil, badURL(raw, err.Error())
		}
		cfg.Addrs = append(cfg.Addrs, h)
	}
	q := u.Query()

	switch scheme {
	case "redis", "rediss":
		cfg.Store, cfg.TLS = Redis, scheme == "rediss"
		if len(cfg.Addrs) == 0 {
			return nil, badURL(raw, "no host")
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return nil, badURL(raw, "the path must be a database number")
			}
			cfg.RedisDB = n
		}
		cfg.RedisMaster = q.Get("master")
		if v := q.Get("cluster"); v != "" {
			if cfg.RedisCluster, err = strconv.ParseBool(v); err != nil {
				return nil, badURL(raw, "cluster must be true or false")
			}
		}
		q.Del("master")
		q.Del("cluster")
	case "postgres", "postgresql":
		cfg.Store = Postgres
		if len(cfg.Addrs) == 0 {
			return nil, badURL(raw, "no host")
		}
		if v := q.Get("dlock_enforce_ttl"); v != "" {
			if cfg.PostgresEnforceTTL, err = strconv.ParseBool(v); err != nil {
				return nil, badURL(raw, "dlock_enforce_ttl must be true or false")
			}
		}
		if v := q.Get("dlock_sessions"); v != "" {
			if cfg.PostgresSessions, err = strconv.Atoi(v); err != nil || cfg.PostgresSessions < 1 {
				return nil, badURL(raw, "dlock_sessions must be a positive number")
			}
		}
		if v := q.Get("dlock_namespace"); v != "" {
			cfg.Prefix = v
		}
		if v := q.Get("dlock_record_holders"); v != "" {
			if cfg.PostgresRecordHolders, err = strconv.ParseBool(v); err != nil {
				return nil, badURL(raw, "dlock_record_holders must be true or false")
			}
		}
		for _, k := range []string{"dlock_enforce_ttl", "dlock_sessions", "dlock_namespace", "dlock_record_holders"} {
			q.Del(k)
		}
		// What is left is pgx's: rebuild the DSN without our options.
		cfg.PostgresDSN = "postgres://" + authority + u.EscapedPath()
		if pgq := withoutCommon(q).Encode(); pgq != "" {
			cfg.PostgresDSN += "?" + pgq
		}
	case "etcd":
		cfg.Store = Etcd
		if len(cfg.Addrs) == 0 {
			return nil, badURL(raw, "no host")
		}
		if v := q.Get("tls"); v != "" {
			if cfg.TLS, err = strconv.ParseBool(v); err != nil {
				return nil, badURL(raw, "tls must be true or false")
			}
		}
		if v := q.Get("dial_timeout"); v != "" {
			if cfg.DialTimeout, err = time.ParseDuration(v); err != nil || cfg.DialTimeout <= 0 {
				return nil, badURL(raw, "dial_timeout must be a positive duration")
			}
		}
		q.Del("tls")
		q.Del("dial_timeout")
	case DynamoDB:
		if err := cfg.parseDynamoDB(u, q); err != nil {
			return nil, badURL(raw, err.Error())
		}
	case ZooKeeper:
		if err := parseZK(raw, cfg, u, q); err != nil {
			return nil, err
		}
	default:
		return nil, badURL(raw, fmt.Sprintf("unknown store %q (want mem, redis, rediss, postgres, postgresql, etcd, zk or dynamodb)", scheme))
	}
	if err := cfg.common(raw, q); err != nil {
		return nil, err
	}
	if cfg.Store != Postgres {
		for k := range withoutCommon(q) {
			return nil, badURL(raw, fmt.Sprintf("unknown option %q", k))
		}
	}
	return cfg, nil
}

// parseZK reads what is particular to zk:// URLs into cfg, and removes its
// options from q.
func parseZK(raw string, cfg *Config, u *url.URL, q url.Values) error {
	cfg.Store = ZooKeeper
	if len(cfg.Addrs) == 0 {
		return badURL(raw, "no host")
	}
	if u.User != nil {
		return badURL(raw, "zk:// takes no user information")
	}
	if root := strings.TrimSuffix(u.Path, "/"); root != "" {
		if q.Get("prefix") != "" {
			return badURL(raw, "give the root as the path or as prefix=, not both")
		}
		cfg.Prefix = root
	}
	for _, o := range []struct {
		name string
		d    *time.Duration
	}{{"session_timeout", &cfg.ZooKeeperSessionTimeout}, {"max_session_timeout", &cfg.ZooKeeperMaxSessionTimeout}} {
		if v := q.Get(o.name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return badURL(raw, o.name+" must be a positive duration")
			}
			*o.d = d
		}
		q.Del(o.name)
	}
	if v := q.Get("advisory_ttl"); v != "" {
		var err error
		if cfg.ZooKeeperAdvisoryTTL, err = strconv.ParseBool(v); err != nil {
			return badURL(raw, "advisory_ttl must be true or false")
		}
	}
	q.Del("advisory_ttl")
	return nil
}

// common reads the options every store takes.
func (c *Config) common(raw string, q url.Values) error {
	if v := q.Get("identity"); v != "" {
		c.Identity = v
	}
	if v := q.Get("prefix"); v != "" {
		c.Prefix = v
	}
	if c.Store == Memory {
		for k := range withoutCommon(q) {
			return badURL(raw, fmt.Sprintf("unknown option %q", k))
		}
	}
	return nil
}

func withoutCommon(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		if k != "identity" && k != "prefix" {
			out[k] = v
		}
	}
	return out
}

func checkHostPort(h string) error {
	host, port, ok := strings.Cut(h, ":")
	if strings.HasPrefix(h, "[") { // [::1]:6379
		i := strings.Index(h, "]")
		if i < 0 {
			return errors.New("bad IPv6 address")
		}
		host, port, ok = h[1:i], strings.TrimPrefix(h[i+1:], ":"), strings.HasPrefix(h[i+1:], ":")
	}
	if host == "" {
		return errors.New("empty host")
	}
	if ok {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
	}
	return nil
}

// badURL builds an error wrapping ErrInvalidURL that shows raw with any
// password replaced by "xxxxx".
func badURL(raw, why string) error {
	return fmt.Errorf("%w %s: %s", ErrInvalidURL, Redact(raw), why)
}

// Redact returns raw with the password of its user information and any
// password query parameter replaced by "xxxxx". It works on URLs that
// net/url cannot parse too.
func Redact(raw string) string {
	raw = redactQuery(raw)
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// redactQuery hides the values of password= query parameters.
func redactQuery(raw string) string {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw
	}
	parts := strings.Split(query, "&")
	for i, p := range parts {
		if k, _, _ := strings.Cut(p, "="); strings.EqualFold(k, "password") {
			parts[i] = k + "=xxxxx"
		}
	}
	return base + "?" + strings.Join(parts, "&")
}
