package redislock

import (
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
)

// A script is Lua source run with EVALSHA, falling back to EVAL when the
// server does not know it yet (NOSCRIPT: a new or restarted server, a new
// cluster node). EVAL also loads it into the server's script cache.
type script struct {
	src string
	sha string
}

func newScript(src string) script {
	h := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(h[:])}
}

var (
	//go:embed acquire.lua
	acquireSrc string
	//go:embed refresh.lua
	refreshSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed inspect.lua
	inspectSrc string
)
