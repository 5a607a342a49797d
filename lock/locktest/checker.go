package locktest

import (
	"fmt"
	"sync"
)

// Checker records critical sections and reports any two that overlap on the
// same key, and any token that is not larger than the one before it on the
// same key. Call Enter just after acquiring and Exit just before releasing;
// a section is open between them. It is safe for concurrent use.
type Checker struct {
	mu       sync.Mutex
	keys     map[string]*keyState
	sections int
	problems []string
}

type keyState struct {
	holder    string // "" when free
	holderTok uint64
	lastToken uint64
}

// NewChecker returns an empty Checker.
func NewChecker() *Checker { return &Checker{keys: make(map[string]*keyState)} }

// Enter records that who entered the critical section of key with token.
func (c *Checker) Enter(key, who string, token uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.keys[key]
	if ks == nil {
		ks = &keyState{}
		c.keys[key] = ks
	}
	c.sections++
	if ks.holder != "" {
		c.problems = append(c.problems, fmt.Sprintf("overlap on %q: %s (token %d) entered while %s (token %d) was inside",
			key, who, token, ks.holder, ks.holderTok))
	}
	if token <= ks.lastToken {
		c.problems = append(c.problems, fmt.Sprintf("token regression on %q: %s got %d after %d", key, who, token, ks.lastToken))
	} else {
		ks.lastToken = token
	}
	ks.holder, ks.holderTok = who, token
}

// Exit records that who left the critical section of key.
func (c *Checker) Exit(key, who string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ks := c.keys[key]; ks != nil && ks.holder == who {
		ks.holder, ks.holderTok = "", 0
	}
}

// Sections returns the number of critical sections entered.
func (c *Checker) Sections() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sections
}

// Problems returns a description of every overlap and token regression seen.
func (c *Checker) Problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.problems...)
}
