package lifetime

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
)

const file = "/ops/cluster.toml"

// host states used by the tests; "unreachable" and "nodocker" are hosts
// that fail preflight, "unknown" is a reachable host whose container could
// not be inspected.
var allStates = []string{"running", "exited", "created", "absent", "unknown", "unreachable", "nodocker"}

func fact(i int, st string) docker.Facts {
	f := docker.Facts{Host: fmt.Sprintf("h%d", i+1), Reachable: true, DockerPresent: true, DockerVersion: "20.10",
		ImageID: "sha256:aaa", Container: docker.ContainerFacts{Name: "c", Image: "img:1"}}
	switch st {
	case "unreachable":
		f.Reachable, f.DockerPresent, f.DockerVersion = false, false, ""
		f.Container.State, f.Error = docker.StateUnknown, "unreachable: no route"
	case "nodocker":
		f.DockerPresent, f.DockerVersion = false, ""
		f.Container.State, f.Error = docker.StateUnknown, "docker is not installed"
	case "unknown":
		f.Container.State, f.Error = docker.StateUnknown, "inspecting the container: weird"
	default:
		f.Container.State = docker.State(st)
	}
	if st == "running" || st == "exited" || st == "created" {
		f.Container.ID = fmt.Sprintf("id%d", i)
		f.Container.ImageID = "sha256:aaa"
	}
	return f
}

func facts(states ...string) []docker.Facts {
	out := make([]docker.Facts, len(states))
	for i, st := range states {
		out[i] = fact(i, st)
	}
	return out
}

func actions(p Plan) string {
	var a []string
	for _, h := range p.Hosts {
		a = append(a, string(h.Action))
	}
	return strings.Join(a, ",")
}

func TestDecideTable(t *testing.T) {
	perRunLabels := map[string]string{LabelManaged: "true", LabelLifetime: "per_run", LabelCluster: file}
	withLabels := func(fs []docker.Facts, i int, l map[string]string) []docker.Facts {
		fs[i].Container.Labels = l
		return fs
	}
	skew := facts("running", "running", "running")
	skew[2].Container.ImageID = "sha256:bbb"
	unreadable := facts("running", "running", "running")
	unreadable[1].Container.ImageID = ""
	stale := facts("running", "running", "running")
	for i := range stale {
		stale[i].ImageID = "sha256:new"
	}
	for _, tc := range []struct {
		name     string
		lt       cluster.Lifetime
		facts    []docker.Facts
		restart  bool
		verdict  Verdict
		actions  string
		reason   string // substring
		warnings int
	}{
		{"persistent attach", cluster.LifetimePersistent, facts("running", "running", "running"), false, Proceed, "attach,attach,attach", "attach", 0},
		{"persistent cold start", cluster.LifetimePersistent, facts("absent", "absent", "absent"), false, Proceed, "launch,launch,launch", "cold start", 0},
		{"persistent partial", cluster.LifetimePersistent, facts("running", "absent", "running"), false, Refuse, "none,none,none", "absent on h2; running on h[1,3]", 0},
		{"persistent unknown host", cluster.LifetimePersistent, facts("running", "unknown", "running"), false, Refuse, "none,none,none", "unknown on h2", 0},
		{"persistent all stopped", cluster.LifetimePersistent, facts("exited", "created", "exited"), false, Refuse, "none,none,none", "cvs up --restart", 0},
		{"persistent restart", cluster.LifetimePersistent, facts("exited", "created", "exited"), true, Proceed, "start,start,start", "restart", 0},
		{"persistent stopped and running", cluster.LifetimePersistent, facts("exited", "running", "running"), true, Refuse, "none,none,none", "partial persistence", 0},
		{"persistent all paused", cluster.LifetimePersistent, facts("paused", "paused"), false, Refuse, "none,none", "is paused on all 2 host(s)", 0},
		{"persistent skew", cluster.LifetimePersistent, skew, false, Refuse, "none,none,none", "image skew", 0},
		{"persistent unreadable image", cluster.LifetimePersistent, unreadable, false, Refuse, "none,none,none", "could not be read on h2", 0},
		{"persistent stale tag warns", cluster.LifetimePersistent, stale, false, Proceed, "attach,attach,attach", "attach", 3},
		{"unreachable is preflight", cluster.LifetimePersistent, facts("running", "unreachable", "running"), false, Preflight, "none,none,none", "h2", 0},
		{"no docker is preflight", cluster.LifetimePerRun, facts("absent", "nodocker", "absent"), false, Preflight, "none,none,none", "h2", 0},
		{"no_launch runs", cluster.LifetimeNoLaunch, facts("running", "running"), false, Proceed, "attach,attach", "will not start or remove", 0},
		{"no_launch absent", cluster.LifetimeNoLaunch, facts("running", "absent"), false, Refuse, "none,none", "not running on 1 of 2 host(s) (h2)", 0},
		{"no_launch skew", cluster.LifetimeNoLaunch, skew, false, Refuse, "none,none,none", "image skew", 0},
		{"per_run fresh", cluster.LifetimePerRun, facts("absent", "absent"), false, Proceed, "launch,launch", "remove it", 0},
		{"per_run replaces its own leftover", cluster.LifetimePerRun, withLabels(facts("absent", "exited"), 1, perRunLabels), false, Proceed, "launch,replace", "launch", 0},
		{"per_run refuses a running leftover (another run may own it)", cluster.LifetimePerRun, withLabels(facts("absent", "running"), 1, perRunLabels), false, Refuse, "none,none", "another `cvs run` may be using it", 0},
		{"per_run refuses a foreign container", cluster.LifetimePerRun, facts("absent", "running"), false, Refuse, "none,none", "did not create exists on h2", 0},
		{"per_run refuses a persistent container", cluster.LifetimePerRun, withLabels(facts("absent", "running"), 1, map[string]string{LabelManaged: "true", LabelLifetime: "persistent", LabelCluster: file}), false, Refuse, "none,none", "did not create", 0},
		{"per_run refuses another cluster's leftover", cluster.LifetimePerRun, withLabels(facts("exited"), 0, map[string]string{LabelManaged: "true", LabelLifetime: "per_run", LabelCluster: "/other.toml"}), false, Refuse, "none", "did not create", 0},
		{"per_run unknown", cluster.LifetimePerRun, facts("absent", "unknown"), false, Refuse, "none,none", "unknown on h2", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Decide(tc.lt, tc.facts, Options{ClusterFile: file, Restart: tc.restart})
			if p.Verdict != tc.verdict || actions(p) != tc.actions || !strings.Contains(p.Reason, tc.reason) || len(p.Warnings) != tc.warnings {
				t.Errorf("got %s [%s] %q warnings=%v\nwant %s [%s] containing %q, %d warnings",
					p.Verdict, actions(p), p.Reason, p.Warnings, tc.verdict, tc.actions, tc.reason, tc.warnings)
			}
		})
	}
}

// TestDecideEveryCombination enumerates every combination of host states on
// three hosts for every lifetime, and checks the rules that protect an
// operator's containers, whatever the combination.
func TestDecideEveryCombination(t *testing.T) {
	n := len(allStates)
	for _, lt := range []cluster.Lifetime{cluster.LifetimeNoLaunch, cluster.LifetimePerRun, cluster.LifetimePersistent} {
		for _, restart := range []bool{false, true} {
			for c := 0; c < n*n*n; c++ {
				states := []string{allStates[c%n], allStates[c/n%n], allStates[c/n/n]}
				p := Decide(lt, facts(states...), Options{ClusterFile: file, Restart: restart})
				name := fmt.Sprintf("%s restart=%v %v", lt, restart, states)
				checkInvariants(t, name, lt, restart, states, p)
			}
		}
	}
}

func checkInvariants(t *testing.T, name string, lt cluster.Lifetime, restart bool, states []string, p Plan) {
	t.Helper()
	has := func(s string) bool {
		for _, x := range states {
			if x == s {
				return true
			}
		}
		return false
	}
	all := func(set ...string) bool {
		for _, x := range states {
			ok := false
			for _, s := range set {
				ok = ok || x == s
			}
			if !ok {
				return false
			}
		}
		return true
	}
	if len(p.Hosts) != len(states) {
		t.Fatalf("%s: %d host plans", name, len(p.Hosts))
	}
	if p.Reason == "" {
		t.Errorf("%s: no reason given", name)
	}
	// A host that cannot be used stops everything, before any other rule.
	if has("unreachable") || has("nodocker") {
		if p.Verdict != Preflight {
			t.Errorf("%s: verdict %s, want preflight", name, p.Verdict)
		}
	}
	for i, h := range p.Hosts {
		if p.Verdict != Proceed && h.Action != Skip {
			t.Errorf("%s: action %s on %s with verdict %s", name, h.Action, h.Host, p.Verdict)
		}
		// No lifetime ever launches over, or replaces, a running container.
		if states[i] == "running" && h.Action != Attach && h.Action != Skip {
			t.Errorf("%s: action %s on a running container", name, h.Action)
		}
		if lt == cluster.LifetimeNoLaunch && h.Action != Attach && h.Action != Skip {
			t.Errorf("%s: no_launch planned %s", name, h.Action)
		}
		if states[i] == "unknown" && h.Action != Skip {
			t.Errorf("%s: action %s on a host whose state is unknown", name, h.Action)
		}
	}
	if p.Verdict != Proceed {
		return
	}
	switch lt {
	case cluster.LifetimeNoLaunch:
		if !all("running") {
			t.Errorf("%s: no_launch proceeds without the container running everywhere", name)
		}
	case cluster.LifetimePersistent:
		ok := all("running") || all("absent") || restart && all("exited", "created")
		if !ok {
			t.Errorf("%s: persistent proceeds on a mixed cluster", name)
		}
	case cluster.LifetimePerRun:
		// The test's containers carry no cvs labels: per_run may only
		// proceed where there is no container at all.
		if !all("absent") {
			t.Errorf("%s: per_run proceeds over containers it did not create", name)
		}
	}
}

// Issue 9 item 17: attaching while the configured tag is missing on some
// host says so, per host.
func TestAttachWarnsWhereTheTagIsMissing(t *testing.T) {
	fs := facts("running", "running", "running")
	fs[1].ImageID = ""
	p := Decide(cluster.LifetimePersistent, fs, Options{ClusterFile: file, Image: "img:1"})
	if p.Verdict != Proceed {
		t.Fatalf("verdict %s: %s", p.Verdict, p.Reason)
	}
	found := false
	for _, w := range p.Warnings {
		if strings.HasPrefix(w, "h2: ") && strings.Contains(w, "img:1 is not on this host") {
			found = true
		}
		if strings.HasPrefix(w, "h1: ") || strings.HasPrefix(w, "h3: ") {
			t.Errorf("warning for a host that has the tag: %s", w)
		}
	}
	if !found {
		t.Errorf("no warning for h2: %q", p.Warnings)
	}
}

// Issue 10: before launching anything, hosts whose local copy of the
// configured tag names different images are a refusal (exit 5) with the
// host → image ID table, not a launch everywhere and a rollback.
func TestLaunchRefusedWhenLocalTagsDiffer(t *testing.T) {
	for _, lt := range []cluster.Lifetime{cluster.LifetimePerRun, cluster.LifetimePersistent} {
		fs := facts("absent", "absent", "absent")
		fs[1].ImageID = "sha256:bbb"
		p := Decide(lt, fs, Options{ClusterFile: file, Image: "img:1"})
		if p.Verdict != Refuse || !strings.Contains(p.Reason, "img:1") || !strings.Contains(p.Hosts[1].Note, "sha256:bbb") || !strings.Contains(p.Hosts[0].Note, "sha256:aaa") {
			t.Errorf("%s: %s %q %+v", lt, p.Verdict, p.Reason, p.Hosts)
		}
		// Pinned to a digest, the local tags do not matter.
		p = Decide(lt, fs, Options{ClusterFile: file, Image: "img:1", Pinned: true})
		if p.Verdict != Proceed {
			t.Errorf("%s pinned: %s %s", lt, p.Verdict, p.Reason)
		}
		// A host without the tag pulls it: one local ID is no skew.
		fs[1].ImageID = ""
		if p := Decide(lt, fs, Options{ClusterFile: file, Image: "img:1"}); p.Verdict != Proceed {
			t.Errorf("%s: %s %s", lt, p.Verdict, p.Reason)
		}
	}
}

// A container launched pinned (repo@digest) does not need the tag on its
// host: no missing-tag warning for it.
func TestNoMissingTagWarningForPinnedContainers(t *testing.T) {
	fs := facts("running", "running")
	for i := range fs {
		fs[i].ImageID = ""
		fs[i].Container.Image = "reg:5000/img@sha256:" + strings.Repeat("ab", 32)
	}
	p := Decide(cluster.LifetimePersistent, fs, Options{ClusterFile: file, Image: "reg:5000/img:1"})
	if p.Verdict != Proceed || len(p.Warnings) != 0 {
		t.Errorf("verdict %s, warnings %q", p.Verdict, p.Warnings)
	}
}

// Issue 11 preflight: a host that must pull an image bigger than the free
// space under its Docker root fails the plan before any change (exit 3),
// naming the host and both sizes; hosts that hold the image already, or
// whose free space is unknown, are not held against it.
func TestDiskPreflight(t *testing.T) {
	for _, lt := range []cluster.Lifetime{cluster.LifetimePerRun, cluster.LifetimePersistent} {
		fs := facts("absent", "absent", "absent")
		for i := range fs {
			fs[i].ImageID = ""
			fs[i].HostFacts.DiskFreeKiB = 10 << 20 // 10 GiB
		}
		fs[1].HostFacts.DiskFreeKiB = 20 << 10 // 20 MiB
		fs[2].HostFacts.DiskFreeKiB = -1
		p := Decide(lt, fs, Options{ClusterFile: file, Image: "img:1", Pinned: true, ImageBytes: 80 << 20})
		if p.Verdict != Preflight || !strings.Contains(p.Reason, fs[1].Host) || strings.Contains(p.Reason, fs[2].Host) ||
			!strings.Contains(p.Reason, "20 MiB free") || !strings.Contains(p.Reason, "80 MiB") || actions(p) != "none,none,none" {
			t.Errorf("%s: %s %q %s", lt, p.Verdict, p.Reason, actions(p))
		}
		fs[1].ImageID = "sha256:aaa" // it holds the image: nothing to pull
		if p := Decide(lt, fs, Options{ClusterFile: file, Image: "img:1", Pinned: true, ImageBytes: 80 << 20}); p.Verdict != Proceed {
			t.Errorf("%s with the image there: %s %s", lt, p.Verdict, p.Reason)
		}
	}
}

// Issue 21 item 1: on attach, containers launched from another digest
// than the one the tag names now are named with both digests, whether
// the launch reference carries it (pull) or the cvs.digest label does
// (push).
func TestAttachNamesContainersOnAnOldDigest(t *testing.T) {
	old, now := "sha256:"+strings.Repeat("ab", 32), "sha256:"+strings.Repeat("cd", 32)
	fs := facts("running", "running", "running")
	fs[0].Container.Image = "reg:5000/img@" + old
	fs[1].Container.Image = "reg:5000/img:1"
	fs[1].Container.Labels = map[string]string{LabelDigest: old}
	fs[2].Container.Image = "reg:5000/img@" + now
	fs[0].ImageID, fs[2].ImageID = "", "" // the pushed tag is on h2
	p := Decide(cluster.LifetimePersistent, fs, Options{ClusterFile: file, Image: "reg:5000/img:1", Pinned: true, Digest: now})
	if p.Verdict != Proceed || len(p.Warnings) != 1 {
		t.Fatalf("verdict %s, warnings %q", p.Verdict, p.Warnings)
	}
	w := p.Warnings[0]
	if !strings.Contains(w, old) || !strings.Contains(w, now) || !strings.HasPrefix(w, "h[1-2]: ") || strings.Contains(w, fs[2].Host) {
		t.Errorf("warning %q", w)
	}
}
