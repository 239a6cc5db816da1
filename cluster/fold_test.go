package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestFoldHostList(t *testing.T) {
	seq := func(format string, from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprintf(format, i))
		}
		return out
	}
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, ""},
		{[]string{"node07"}, "node07"},
		{seq("node%02d", 3, 12), "node[03-12]"},
		{[]string{"node001", "node002", "node003", "node005"}, "node[001-003,005]"},
		{append(seq("node%02d", 1, 4), "gpu2", "gpu1"), "gpu[1-2],node[01-04]"},
		{[]string{"login", "node1", "head", "node2"}, "head,login,node[1-2]"},
		{append(seq("rack1-node%02d", 1, 3), seq("rack2-node%02d", 1, 3)...), "rack1-node[01-03],rack2-node[01-03]"},
		{seq("node%d.dc2", 1, 3), "node[1-3].dc2"},
		{seq("10.0.0.%d", 1, 4), "10.0.0.[1-4]"},
		{[]string{"127.0.0.1:2201", "127.0.0.1:2202"}, "127.0.0.1:2201,127.0.0.1:2202"},
		{seq("172.27.0.%d:22", 2, 4), "172.27.0.[2-4]:22"},
		{seq("node%d", 8, 11), "node[8-11]"},
		{[]string{"node09", "node10", "node11"}, "node[09-11]"},
		{[]string{"n1", "n01", "n2", "n02"}, "n[01-02,1-2]"},
		{[]string{"b", "a", "b", "a"}, "a,b"},
		{[]string{"node2", "node10", "node3"}, "node[2-3,10]"},
		{[]string{"fe80::1", "[fd00::1]:22", "node1"}, "[fd00::1]:22,fe80::1,node1"},
		{seq("node%03d", 1, 500), "node[001-500]"},
	} {
		got := FoldHostList(tc.names)
		if got != tc.want {
			t.Errorf("FoldHostList(%q) = %q, want %q", tc.names, got, tc.want)
		}
		checkRoundTrip(t, tc.names)
	}
}

// A range never names more hosts than ExpandHostList accepts in one.
func TestFoldHostListSplitsPastTheLimit(t *testing.T) {
	var names []string
	for i := range maxExpansion + 5 {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	rs := FoldHosts(names)
	if len(rs) != 2 || rs[0].Hosts != maxExpansion || rs[1].Hosts != 5 {
		t.Fatalf("%d entries: %v", len(rs), rs)
	}
	checkRoundTrip(t, names)
}

// checkRoundTrip: the fold of names that ExpandHostList reads as
// themselves expands back to the distinct names, each once.
func checkRoundTrip(t *testing.T, names []string) {
	t.Helper()
	var want []string
	for _, n := range names {
		if got, err := ExpandHostList(n); err == nil && len(got) == 1 && got[0] == n && !slices.Contains(want, n) {
			want = append(want, n)
		}
	}
	folded := FoldHostList(want)
	got, err := ExpandHostList(folded)
	if err != nil {
		t.Fatalf("%q folds to %q, which does not expand: %v", want, folded, err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%q folds to %q, which expands to %q", want, folded, got)
	}
}

// FuzzFoldHostList: expanding the fold of host names (one a line) gives
// the names back.
func FuzzFoldHostList(f *testing.F) {
	for _, s := range []string{"node01\nnode02\nnode10", "rack1-node3\nrack2-node3\nrack1-node4", "n1\nn01\nn001\nn2",
		"10.0.0.1:22\n10.0.0.2:22", "a\nb1\nb2c3\nb2c4", "x9\nx10\nx0010\nx011", "fe80::1\nn0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names := strings.Split(s, "\n")
		if len(names) > 200 {
			return
		}
		checkRoundTrip(t, names)
	})
}
