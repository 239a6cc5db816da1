package redact

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	m := New([]string{"hunter22", "abcdef", "defghi", "ab", "", "s3cr3t-long", "s3cr3t"})
	for in, want := range map[string]string{
		"no secret here":                   "no secret here",
		"pw=hunter22!":                     "pw=***!",
		"hunter22hunter22":                 "***",
		"x abcdefghi y":                    "x *** y", // overlapping secrets: neither half survives
		"abcdef defghi":                    "*** ***",
		"ab is too short to mask":          "ab is too short to mask",
		"s3cr3t-long and s3cr3t":           "*** and ***",
		"line1 hunter22\nline2 abcdef\n\n": "line1 ***\nline2 ***\n\n",
	} {
		if got := m.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	var none *Masker
	if got := none.String("hunter22"); got != "hunter22" {
		t.Errorf("a nil Masker changed its input: %q", got)
	}
	if New([]string{"ab"}) != nil {
		t.Error("New with only short secrets should be nil (nothing to mask)")
	}
}

// A secret split across writes, at every split point, is masked; what
// holds no secret passes through without waiting for a newline.
func TestWriterSplitWrites(t *testing.T) {
	m := New([]string{"hunter22", "abcdef", "defghi"})
	in := "start hunter22 mid abcdefghi end hunter2 x\npartial hunter"
	want := m.String(in)
	for cut := 0; cut <= len(in); cut++ {
		for cut2 := cut; cut2 <= len(in); cut2 += 3 {
			var b strings.Builder
			w := m.Writer(&b)
			for _, part := range []string{in[:cut], in[cut:cut2], in[cut2:]} {
				if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Fatalf("split at %d, %d: got %q, want %q", cut, cut2, b.String(), want)
			}
		}
	}
	// Byte by byte: nothing held back that cannot start a secret.
	var b strings.Builder
	w := m.Writer(&b)
	for _, c := range []byte("progress 10%\rprogress 20%") {
		w.Write([]byte{c})
	}
	if b.String() != "progress 10%\rprogress 20%" {
		t.Errorf("output without a secret prefix was held back: %q", b.String())
	}
	w.Write([]byte(" hunt"))
	if strings.HasSuffix(b.String(), "hunt") {
		t.Error("a possible secret prefix was written before its end was known")
	}
	w.Flush()
	if !strings.HasSuffix(b.String(), " hunt") {
		t.Errorf("Flush did not write the held-back tail: %q", b.String())
	}
}

func TestNilMaskerWriter(t *testing.T) {
	var b strings.Builder
	var m *Masker
	w := m.Writer(&b)
	w.Write([]byte("hunter22"))
	w.Flush()
	if b.String() != "hunter22" {
		t.Errorf("got %q", b.String())
	}
}

func TestTruncated(t *testing.T) {
	m := New([]string{"hunter22", "abcdef"})
	for in, want := range map[string]string{
		"ter22 and then abcdef": "*** and then ***",
		"22":                    "***",
		"plain":                 "plain",
		"hunter22 x":            "*** x",
	} {
		if got := m.Truncated(in); got != want {
			t.Errorf("Truncated(%q) = %q, want %q", in, got, want)
		}
	}
}
