package shell

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cvs-tool/cvs/internal/golden"
)

// goldenCases are argv lists whose quoted form is pinned in testdata/join.golden:
// a change to the quoting rules shows up as a diff there.
var goldenCases = [][]string{
	{"true"},
	{"echo", "hello world"},
	{"echo", ""},
	{"echo", "it's"},
	{"echo", "$HOME", "`id`", "$(id)"},
	{"sh", "-c", "ls | wc -l; echo done"},
	{"docker", "inspect", "--format", "{{.State.Status}}", "cvs-lab"},
	{"echo", "FOO=bar", "x=1=2", "--opt=value"},
	{"FOO=bar", "env"},
	{"printf", "%s\\n", "a\nb"},
	{"echo", "*", "?", "[a]", "~", "#x", "a;b", "a&b", "a|b", "a>b", "a<b"},
	{"echo", "tab\there", "ünïcödé", "back\\slash", `dq"uote`},
	{"ls", "/var/lib/docker", "user@host:22", "a,b", "+x", "-", "--"},
}

func TestJoinGolden(t *testing.T) {
	var b bytes.Buffer
	for _, argv := range goldenCases {
		fmt.Fprintf(&b, "%q\n\t%s\n", argv, Join(argv...))
	}
	golden.Check(t, "join.golden", b.Bytes())
}

func TestQuoteTable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"plain", "plain"},
		{"/usr/bin/env", "/usr/bin/env"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"FOO=bar", "'FOO=bar'"},
		{"=x", "'=x'"},
		{"--x=y", "--x=y"},
		{"~", "'~'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// roundTrip runs printf through a real /bin/sh with the joined argv and
// returns the words the shell actually passed.
func roundTrip(t testing.TB, args []string) []string {
	t.Helper()
	line := Join(append([]string{"printf", `%s\000`}, args...)...)
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	if err != nil {
		t.Fatalf("sh -c %s: %v", line, err)
	}
	got := strings.Split(string(out), "\x00")
	return got[:len(got)-1]
}

func TestJoinRoundTripsThroughSh(t *testing.T) {
	for _, argv := range goldenCases {
		got := roundTrip(t, argv)
		if fmt.Sprint(got) != fmt.Sprint(argv) {
			t.Errorf("sh received %q, want %q (line %s)", got, argv, Join(argv...))
		}
	}
}

func FuzzJoin(f *testing.F) {
	for _, argv := range goldenCases {
		f.Add(strings.Join(argv, "\x1f"))
	}
	f.Fuzz(func(t *testing.T, joined string) {
		// NUL cannot be part of an argv word, and the shell reads bytes,
		// so only valid strings without NUL are meaningful inputs.
		if strings.ContainsRune(joined, 0) || !utf8.ValidString(joined) {
			t.Skip()
		}
		argv := strings.Split(joined, "\x1f")
		if back, ok := Split(Join(argv...)); !ok || !slices.Equal(back, argv) {
			t.Fatalf("Split(Join(%q)) = %q, %v", argv, back, ok)
		}
		got := roundTrip(t, argv)
		if len(got) != len(argv) {
			t.Fatalf("sh received %d words %q, want %d %q", len(got), got, len(argv), argv)
		}
		for i := range argv {
			if got[i] != argv[i] {
				t.Fatalf("word %d: sh received %q, want %q", i, got[i], argv[i])
			}
		}
	})
}

func TestSplitRejects(t *testing.T) {
	for _, l := range []string{"a | b", "cat < f", `echo "x"`, "'open", "$HOME"} {
		if argv, ok := Split(l); ok {
			t.Errorf("Split(%q) = %q, want not ok", l, argv)
		}
	}
}
