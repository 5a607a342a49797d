package zklock

import (
	"strings"
	"testing"
)

func TestEscape_Table(t *testing.T) {
	cases := []struct{ key, name string }{
		{"a", "a"},
		{"job-1_x", "job-1_x"},
		{".", "%2E"},
		{"..", "%2E%2E"},
		{"a/b", "a%2Fb"},
		{"/", "%2F"},
		{"\x00", "%00"},
		{"%", "%25"},
		{"@", "%40"},
		{"é", "%C3%A9"},
		{"\xff", "%FF"},
		{"zookeeper", "zookeeper"},
	}
	for _, c := range cases {
		if got := escape(c.key); got != c.name {
			t.Errorf("escape(%q) = %q, want %q", c.key, got, c.name)
		}
		if got, ok := unescape(c.name); !ok || got != c.key {
			t.Errorf("unescape(%q) = %q, %v, want %q", c.name, got, ok, c.key)
		}
	}
	for _, bad := range []string{"", "%", "%4", "%2e", "%41", "a/b", "a@b", "%zz", ".", "a b"} {
		if k, ok := unescape(bad); ok {
			t.Errorf("unescape(%q) = %q, accepted", bad, k)
		}
	}
}

func TestValidRoot(t *testing.T) {
	for _, r := range []string{"/dlock", "/a/b-c/d_e", "/ключ", "/a.b"} {
		if err := validRoot(r); err != nil {
			t.Errorf("validRoot(%q): %v", r, err)
		}
	}
	for _, r := range []string{"", "x", "/", "/a/", "//a", "/a//b", "/.", "/a/..", "/zookeeper", "/zookeeper/q", "/a\x01", "/\u2028\ufff5", "/🔒"} {
		if err := validRoot(r); err == nil {
			t.Errorf("validRoot(%q): no error", r)
		}
	}
}

// FuzzEscape checks that escape always yields a valid znode name that
// unescape maps back to the key, and that unescape accepts only names
// escape produces.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"a", ".", "..", "/", "a/b", "\x00", "%", "%2E", "@", "é", "\xff\xfe", "zookeeper", "🔒 schlüssel"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s != "" {
			name := escape(s)
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/@") {
				t.Fatalf("escape(%q) = %q: not a valid node name", s, name)
			}
			for i := 0; i < len(name); i++ {
				if c := name[i]; !safe(c) && c != '%' {
					t.Fatalf("escape(%q) = %q holds %q", s, name, c)
				}
			}
			if back, ok := unescape(name); !ok || back != s {
				t.Fatalf("unescape(escape(%q)) = %q, %v", s, back, ok)
			}
		}
		if k, ok := unescape(s); ok && escape(k) != s {
			t.Fatalf("unescape(%q) = %q, but escape gives %q", s, k, escape(k))
		}
		_ = validRoot(s) // never panics
	})
}
