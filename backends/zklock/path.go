package zklock

import (
	"fmt"
	"strings"
)

// escape turns key, any bytes, into a valid znode name: the bytes
// A-Z a-z 0-9 '-' '_' stay, every other byte becomes '%' and two uppercase
// hexadecimal digits. The result is never empty, never "." or "..", holds
// no '/', no '@' (the marker separator) and no control character, and
// escape is injective: unescape inverts it.
func escape(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		if safe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

func safe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// unescape inverts escape. It accepts only what escape produces (uppercase
// digits, no escaped safe byte), so that every name maps back to one key
// and that key back to the same name; ok is false for anything else.
func unescape(name string) (key string, ok bool) {
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case safe(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(name):
			hi, lo := unhex(name[i+1]), unhex(name[i+2])
			if hi < 0 || lo < 0 {
				return "", false
			}
			v := byte(hi<<4 | lo)
			if safe(v) {
				return "", false
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", false
		}
	}
	if b.Len() == 0 {
		return "", false
	}
	return b.String(), true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// validRoot checks that root is an absolute znode path that dlock may
// create: it starts with '/', does not end with one, has no empty, "." or
// ".." component, no control character, and is not ZooKeeper's own
// /zookeeper tree.
func validRoot(root string) error {
	if root == "" || root[0] != '/' || root == "/" || strings.HasSuffix(root, "/") {
		return fmt.Errorf("zklock: root %q must be an absolute path other than / without a trailing /", root)
	}
	for _, part := range strings.Split(root[1:], "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("zklock: root %q has an empty, . or .. component", root)
		}
	}
	for _, r := range root {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xd800 && r <= 0xf8ff || r >= 0xfff0 {
			return fmt.Errorf("zklock: root %q has a character ZooKeeper refuses in paths", root)
		}
	}
	if root == "/zookeeper" || strings.HasPrefix(root, "/zookeeper/") {
		return fmt.Errorf("zklock: root %q is inside ZooKeeper's own tree", root)
	}
	return nil
}

// paths of one backend: the lock nodes live under root/l, the owner markers
// under root/o, package once's records under root/r.
type paths struct{ root, locks, owners, records string }

func newPaths(root string) paths {
	return paths{root: root, locks: root + "/l", owners: root + "/o", records: root + "/r"}
}

// record is the path of key's once record.
func (p paths) record(key string) string { return p.records + "/" + escape(key) }

// lock is the path of key's lock node.
func (p paths) lock(key string) string { return p.locks + "/" + escape(key) }

// marker is the path of the marker node that owner's acquisition of key
// creates beside the lock node: it exists exactly as long as owner holds
// key, which lets Release delete the lock node only if it is owner's.
func (p paths) marker(key, owner string) string {
	return p.owners + "/" + escape(key) + "@" + escape(owner)
}
