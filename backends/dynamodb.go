package backends

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/dlockgo/dlock/backends/dynamolock"
	"github.com/dlockgo/dlock/lock/driver"
)

// The URL of the DynamoDB store:
//
//	dynamodb://[key_id:secret@][host:port]/[table][?region=…&tls=false&create_table=true]
//
// The host is an endpoint to use instead of AWS's regional one (DynamoDB
// Local, dynalite, a VPC endpoint); without one the SDK picks AWS's
// endpoint for the region. The path is the table (default "dlock").
// tls=false talks plain http to the host, which local emulators need: TLS
// is the default for every endpoint, a loopback one included, rather than
// a rule that guesses. Credentials in the URL are a static key pair and
// are redacted like any password; usually they are left out and come from
// the AWS SDK's default chain, the way every AWS program gets them.

// parseDynamoDB fills c from a dynamodb:// URL whose hosts ParseURL has
// already cut into c.Addrs, and removes its options from q.
func (c *Config) parseDynamoDB(u *url.URL, q url.Values) error {
	c.Store = DynamoDB
	if len(c.Addrs) > 1 {
		return errors.New("one endpoint at most")
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("credentials need both the access key ID and the secret")
	}
	if table := strings.TrimPrefix(u.Path, "/"); table != "" {
		if err := dynamolock.CheckTableName(table); err != nil {
			return errors.New("the path must be a table name: 3 to 255 of a-z, A-Z, 0-9, '_', '-' and '.'")
		}
		c.DynamoDBTable = table
	}
	c.DynamoDBRegion = q.Get("region")
	c.TLS = true
	if v := q.Get("tls"); v != "" {
		tls, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("tls must be true or false")
		}
		if !tls && len(c.Addrs) == 0 {
			return errors.New("tls=false needs an endpoint host")
		}
		c.TLS = tls
	}
	if v := q.Get("create_table"); v != "" {
		var err error
		if c.DynamoDBCreateTable, err = strconv.ParseBool(v); err != nil {
			return errors.New("create_table must be true or false")
		}
	}
	for _, k := range []string{"region", "tls", "create_table"} {
		q.Del(k)
	}
	return nil
}

// connectDynamoDB builds a DynamoDB client for cfg and checks that the
// table answers (creating it first when asked to).
func connectDynamoDB(ctx context.Context, cfg *Config) (*dynamoConn, error) {
	if len(cfg.Addrs) > 1 {
		return nil, fmt.Errorf("%w: dynamodb: one endpoint at most", ErrInvalidURL)
	}
	var opts []func(*config.LoadOptions) error
	loopback := len(cfg.Addrs) == 1 && isLoopback(cfg.Addrs[0])
	switch {
	case cfg.Username != "":
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.Username, cfg.Password, "")))
	case loopback:
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider("dlock-local", "dlock-local", "")))
	}
	if cfg.DynamoDBRegion != "" {
		opts = append(opts, config.WithRegion(cfg.DynamoDBRegion))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("backends: dynamodb: loading the AWS configuration: %w", err)
	}
	// A transport of our own, so that Close can close its connections:
	// the one the SDK configured (proxy, AWS_CA_BUNDLE…), copied.
	closeClient := func() error { return nil }
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tr := bc.GetTransport()
		awsCfg.HTTPClient = &http.Client{Transport: tr, Timeout: bc.GetTimeout()}
		closeClient = func() error { tr.CloseIdleConnections(); return nil }
	}
	if awsCfg.Region == "" {
		if !loopback {
			return nil, fmt.Errorf("%w: dynamodb: no region: add ?region=… or set AWS_REGION", ErrInvalidURL)
		}
		awsCfg.Region = "us-east-1"
	}
	client := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if len(cfg.Addrs) == 1 {
			scheme := "https://"
			if !cfg.TLS {
				scheme = "http://"
			}
			o.BaseEndpoint = new(scheme + cfg.Addrs[0])
		}
	})
	dopts := &dynamolock.Options{Table: cmp.Or(cfg.DynamoDBTable, dynamolock.DefaultTable), KeyPrefix: cfg.Prefix}
	b, err := dynamolock.NewBackend(client, dopts)
	if err != nil {
		closeClient()
		return nil, fmt.Errorf("backends: dynamodb: %w", err)
	}
	if cfg.DynamoDBCreateTable {
		err = dynamolock.CreateTable(ctx, client, dopts.Table, nil)
	}
	if err == nil {
		err = b.Ping(ctx)
	}
	if err != nil {
		closeClient()
		return nil, fmt.Errorf("backends: dynamodb: %w", err)
	}
	return &dynamoConn{b: b, client: client, opts: dopts, close: closeClient}, nil
}

// openDynamoDB returns the DynamoDB store of cfg as a Backend owning its
// client.
func openDynamoDB(ctx context.Context, cfg *Config) (driver.Backend, error) {
	dc, err := connectDynamoDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return own(dc.b, dc.close), nil
}

// dynamoConn is a DynamoDB client made for a Config, a Backend on it, and
// the close of the client's connections.
type dynamoConn struct {
	b      *dynamolock.Backend
	client *dynamodb.Client
	opts   *dynamolock.Options
	close  func() error
}

// isLoopback reports whether hostport names this machine.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
