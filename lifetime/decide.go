// Package lifetime decides what to do with the containers of a cluster,
// from the facts the probe gathered on every host and the container's
// lifetime (no_launch, per_run, persistent). Decide is a pure function:
// it changes nothing, so `cvs run --dry-run` and `cvs status` print its plan
// and the table tests cover every combination of host states.
package lifetime

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/report"
)

// Labels cvs puts on every container it launches.
const (
	LabelManaged    = "cvs.managed"     // "true"
	LabelCluster    = "cvs.cluster"     // absolute path of the cluster file
	LabelLifetime   = "cvs.lifetime"    // per_run | persistent
	LabelVersion    = "cvs.version"     // the cvs version that launched it
	LabelLaunchedAt = "cvs.launched-at" // RFC 3339 UTC
	// LabelRunID marks the containers of one invocation, so that cleanup
	// after a failed launch removes only what that run made.
	LabelRunID = "cvs.run-id"
	// LabelConfig holds the run configuration the container was launched
	// with (JSON: image, mounts, devices, env names, ...), to tell drift
	// from the cluster file on attach.
	LabelConfig = "cvs.config"
	// LabelDigest is the manifest digest the container was launched from,
	// when the image was pinned (a pushed image launches by tag or ID).
	LabelDigest = "cvs.digest"
)

// Action is what cvs will do with the container on one host.
type Action string

const (
	// Attach: the container runs; use it as it is.
	Attach Action = "attach"
	// Launch: no container; docker run a new one (then provision it).
	Launch Action = "launch"
	// Replace: remove a container an earlier per_run of cvs left behind,
	// then launch.
	Replace Action = "replace"
	// Start: docker start a stopped persistent container (keeps its
	// overlay); only with --restart.
	Start Action = "start"
	// Skip: nothing will be done on this host.
	Skip Action = "none"
	// Reprovision: the container runs but was never provisioned, or with
	// another setup script; run the configured one in it (cvs up
	// --reprovision). Its overlay is kept.
	Reprovision Action = "reprovision"
)

// Verdict is the plan's overall decision.
type Verdict string

const (
	// Proceed: carry out the per-host actions.
	Proceed Verdict = "proceed"
	// Refuse: going on could destroy state or mix images; nothing changes
	// (exit 5).
	Refuse Verdict = "refuse"
	// Preflight: some host cannot be used at all (unreachable, no Docker);
	// nothing changes (exit 3).
	Preflight Verdict = "preflight-failed"
)

// HostPlan is the decision for one host.
type HostPlan struct {
	Host  string       `json:"host"`
	State docker.State `json:"state"`
	// ContainerID is the existing container, if any.
	ContainerID string `json:"container_id,omitempty"`
	ImageID     string `json:"image_id,omitempty"`
	Action      Action `json:"action"`
	// Image, when set, is what a launch on this host runs instead of the
	// configured image (a repair launches the image ID the others run).
	Image string `json:"launch_image,omitempty"`
	// Note explains the action or the host's part in a refusal.
	Note string `json:"note,omitempty"`
}

// Plan is Decide's answer.
type Plan struct {
	Lifetime cluster.Lifetime `json:"lifetime"`
	Verdict  Verdict          `json:"verdict"`
	// Reason is the operator-facing explanation: why cvs refuses and what
	// to do, or what it is about to do.
	Reason   string     `json:"reason"`
	Hosts    []HostPlan `json:"hosts"`
	Warnings []string   `json:"warnings,omitempty"`
	// Provision: freshly launched containers get the setup script.
	Provision bool `json:"provision"`
	// Teardown: the containers cvs launched are removed after the run.
	Teardown bool `json:"teardown"`
}

// Options adjust a decision.
type Options struct {
	// ClusterFile identifies the cluster (the cvs.cluster label).
	ClusterFile string
	// Restart lets a persistent cluster whose containers are all stopped
	// be started again (cvs up --restart).
	Restart bool
	// Image is the configured image reference, named in stale-overlay
	// warnings.
	Image string
	// Pinned: the hosts launch the image by digest, so what the tag names
	// on each host does not matter.
	Pinned bool
	// Digest is the manifest digest the image's tag names now ("" when not
	// resolved): attached containers launched from another are named.
	Digest string
	// SetupHash is the hash of the configured setup script ("none" when
	// provisioning is off); containers provisioned with another one, or
	// never, are refused on attach unless Reprovision.
	SetupHash string
	// Reprovision: run the setup script again in those containers.
	Reprovision bool
	// Config is the run configuration the cluster file asks for now (see
	// LabelConfig); StrictAttach refuses an attach to containers that
	// differ from it, instead of warning.
	Config       map[string]string
	StrictAttach bool
	// MaxClockSkew is how far a host's clock may be from this machine's
	// (0: not checked).
	MaxClockSkew time.Duration
	// HostNetwork: the container uses the host's network, so sshd_port
	// must be free there before a launch.
	HostNetwork bool
	// SSHDPort is the port, named in the advice.
	SSHDPort int
	// ImageBytes is the size of the image's layers as the registry stores
	// them (compressed), 0 when unknown: a host that must pull the image
	// needs at least that much free under its Docker root.
	ImageBytes int64
	// Repair: a persistent set that is not whole is brought back: stopped
	// containers started, really absent ones launched (with the image the
	// others run) and provisioned; running ones never touched.
	Repair bool
}

// Decide returns the plan for lifetime lt given the facts of every host (in
// cluster order). It never guesses: a host whose state is unknown stops
// every lifetime that would change containers.
func Decide(lt cluster.Lifetime, facts []docker.Facts, o Options) Plan {
	p := Plan{Lifetime: lt, Hosts: make([]HostPlan, len(facts))}
	for i, f := range facts {
		p.Hosts[i] = HostPlan{Host: f.Host, State: f.Container.State, ContainerID: f.Container.ID, ImageID: f.Container.ImageID, Action: Skip}
	}
	if bad := preflight(facts); len(bad) > 0 {
		p.Verdict = Preflight
		for _, i := range bad {
			p.Hosts[i].Note = facts[i].Error
		}
		p.Reason = fmt.Sprintf("%d of %d host(s) cannot be used (%s); nothing was changed. Fix them, or remove them from the cluster file, and run again",
			len(bad), len(facts), hostList(facts, bad))
		return p
	}
	if hostPreflight(&p, facts, o) {
		return p
	}
	switch lt {
	case cluster.LifetimeNoLaunch:
		decideNoLaunch(&p, facts, o)
	case cluster.LifetimePerRun:
		decidePerRun(&p, facts, o)
	case cluster.LifetimePersistent:
		decidePersistent(&p, facts, o)
	default:
		p.Verdict, p.Reason = Refuse, fmt.Sprintf("unknown lifetime %q", lt)
	}
	if p.Verdict == Proceed && !o.Pinned {
		refuseOnLocalTags(&p, facts, o.Image)
	}
	if p.Verdict == Proceed {
		portPreflight(&p, facts, o)
	}
	if p.Verdict == Proceed {
		diskPreflight(&p, facts, o)
	}
	return p
}

// diskPreflight fails a plan that launches on hosts without the image whose
// Docker root has less free space than the image's compressed layers: the
// pull would fill the disk part way and fail. (Unpacked, the image needs
// more; this is the bound cvs knows before the pull.)
func diskPreflight(p *Plan, facts []docker.Facts, o Options) {
	if o.ImageBytes <= 0 {
		return
	}
	need := o.ImageBytes >> 20
	var full []int
	for i, hp := range p.Hosts {
		free := facts[i].HostFacts.DiskFreeKiB
		if (hp.Action == Launch || hp.Action == Replace) && hp.Image == "" && facts[i].ImageID == "" && free >= 0 && free<<10 < o.ImageBytes {
			full = append(full, i)
			p.Hosts[i].Note = fmt.Sprintf("%d MiB free under the Docker root", free>>10)
		}
	}
	if len(full) == 0 {
		return
	}
	p.Verdict = Preflight
	for i := range p.Hosts {
		p.Hosts[i].Action = Skip
	}
	least := full[0]
	for _, i := range full {
		if facts[i].HostFacts.DiskFreeKiB < facts[least].HostFacts.DiskFreeKiB {
			least = i
		}
	}
	where := fmt.Sprintf("%s (%d MiB free)", facts[least].Host, facts[least].HostFacts.DiskFreeKiB>>10)
	if len(full) > 1 {
		where = fmt.Sprintf("%s (as little as %d MiB free, on %s; each host's in the table)", hostList(facts, full), facts[least].HostFacts.DiskFreeKiB>>10, facts[least].Host)
	}
	p.Reason = fmt.Sprintf("preflight failed; nothing was changed: the image's layers are %d MiB compressed, more than the free space under Docker's root on %s: free space there (docker image prune, docker system df) or grow the filesystem, then run again",
		need, where)
}

// hostPreflight fails the plan (nothing changes, exit 3) when hosts share
// a machine ID (cloned from one image: MPI and sshd host keys break) or a
// host's clock is off by more than MaxClockSkew.
func hostPreflight(p *Plan, facts []docker.Facts, o Options) bool {
	byID := map[string][]int{}
	var ids []string
	for i, f := range facts {
		if id := f.HostFacts.MachineID; id != "" {
			if _, ok := byID[id]; !ok {
				ids = append(ids, id)
			}
			byID[id] = append(byID[id], i)
		}
	}
	var problems []string
	for _, id := range ids {
		if hs := byID[id]; len(hs) > 1 {
			for _, i := range hs {
				p.Hosts[i].Note = "machine-id " + id[:min(12, len(id))] + " shared with other hosts"
			}
			problems = append(problems, fmt.Sprintf("%s share the machine ID %s (cloned from one image): give each host its own (rm /etc/machine-id; systemd-machine-id-setup)", hostList(facts, hs), id))
		}
	}
	if o.MaxClockSkew > 0 {
		var off []int
		for i, f := range facts {
			if s := f.HostFacts.ClockSkew; s > o.MaxClockSkew.Seconds() || -s > o.MaxClockSkew.Seconds() {
				off = append(off, i)
				p.Hosts[i].Note = fmt.Sprintf("clock %+.0fs off this machine's", s)
			}
		}
		if len(off) > 0 {
			problems = append(problems, fmt.Sprintf("the clocks of %s are more than %s off this machine's (max_clock_skew): run NTP (chrony, systemd-timesyncd) there", hostList(facts, off), o.MaxClockSkew))
		}
	}
	if len(problems) == 0 {
		return false
	}
	p.Verdict = Preflight
	for i := range p.Hosts {
		p.Hosts[i].Action = Skip
	}
	p.Reason = "preflight failed; nothing was changed: " + strings.Join(problems, "; ")
	return true
}

// portPreflight fails a plan that launches containers on the host's network
// where something already listens on sshd_port: cvs's sshd could not start
// there (or the peers would reach another sshd).
func portPreflight(p *Plan, facts []docker.Facts, o Options) {
	if !o.HostNetwork {
		return
	}
	var busy []int
	for i, hp := range p.Hosts {
		if (hp.Action == Launch || hp.Action == Replace) && facts[i].HostFacts.PortListening {
			busy = append(busy, i)
			p.Hosts[i].Note = fmt.Sprintf("port %d already in use on the host", o.SSHDPort)
		}
	}
	if len(busy) == 0 {
		return
	}
	p.Verdict = Preflight
	for i := range p.Hosts {
		p.Hosts[i].Action = Skip
	}
	p.Reason = fmt.Sprintf("preflight failed; nothing was changed: port %d is already in use on %s, and the container shares the host's network: free the port there or set container.sshd_port to a free one",
		o.SSHDPort, hostList(facts, busy))
}

// refuseOnLocalTags refuses a plan that launches on hosts whose local copy
// of the tag names different images: docker run uses the local copy, so
// they would run different images, and the image check after launch would
// roll every host back. Hosts without a local copy pull it.
func refuseOnLocalTags(p *Plan, facts []docker.Facts, image string) {
	ids := map[string]bool{}
	var launching []int
	for i, hp := range p.Hosts {
		if (hp.Action == Launch || hp.Action == Replace) && hp.Image == "" && facts[i].ImageID != "" {
			ids[facts[i].ImageID] = true
			launching = append(launching, i)
		}
	}
	if len(ids) < 2 {
		return
	}
	p.Verdict = Refuse
	for _, i := range launching {
		p.Hosts[i].Note = "has " + image + " as " + facts[i].ImageID
	}
	p.Reason = fmt.Sprintf("image skew before launch: %s names %d different images on the hosts (host → local image ID below), and each host would run its own; nothing was changed. Make the hosts agree (docker pull %s on each, or docker rmi %s where it is stale), or pin the image by digest (image = \"repo@sha256:...\"), then run again",
		image, len(ids), image, image)
}

// preflight returns the hosts that cannot be used at all: unreachable, or
// without a working Docker.
func preflight(facts []docker.Facts) []int {
	var bad []int
	for i, f := range facts {
		if !f.Reachable || f.DockerVersion == "" {
			bad = append(bad, i)
		}
	}
	return bad
}

func decideNoLaunch(p *Plan, facts []docker.Facts, o Options) {
	var notRunning []int
	for i, f := range facts {
		if f.Container.State != docker.StateRunning {
			notRunning = append(notRunning, i)
			p.Hosts[i].Note = noteForState(f)
		}
	}
	if len(notRunning) > 0 {
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("lifetime \"no_launch\": cvs never starts containers, and %q is not running on %d of %d host(s) (%s). Start it there yourself, or use lifetime \"per_run\" or \"persistent\" to let cvs launch it",
			facts[0].Container.Name, len(notRunning), len(facts), hostList(facts, notRunning))
		return
	}
	if refuseOnImages(p, facts, o.Image, "start the same image on every host yourself (cvs never removes no_launch containers)") {
		return
	}
	for i := range p.Hosts {
		p.Hosts[i].Action = Attach
	}
	p.Verdict = Proceed
	p.Reason = fmt.Sprintf("attach to the running containers on all %d host(s); cvs will not start or remove them", len(facts))
}

func decidePerRun(p *Plan, facts []docker.Facts, o Options) {
	p.Provision, p.Teardown = true, true
	var foreign, unknown, busy []int
	for i, f := range facts {
		c := f.Container
		switch {
		case c.State == docker.StateUnknown:
			unknown = append(unknown, i)
			p.Hosts[i].Note = noteForState(f)
		case c.State == docker.StateAbsent:
			p.Hosts[i].Action = Launch
		case ownedPerRun(c, o.ClusterFile) && c.State == docker.StateRunning:
			// A running leftover may be another cvs run's, still in
			// progress: replacing it would kill that run.
			busy = append(busy, i)
			p.Hosts[i].Note = fmt.Sprintf("a per_run container of this cluster file is running (%s, launched %s)", docker.ShortID(c.ID), c.Labels[LabelLaunchedAt])
		case ownedPerRun(c, o.ClusterFile):
			p.Hosts[i].Action = Replace
			p.Hosts[i].Note = fmt.Sprintf("left by an earlier per_run of cvs (%s, launched %s)", docker.ShortID(c.ID), c.Labels[LabelLaunchedAt])
		default:
			foreign = append(foreign, i)
			p.Hosts[i].Note = "a container of this name that cvs's per_run did not create: " + ownerNote(c, o.ClusterFile)
		}
	}
	switch {
	case len(unknown) > 0:
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("the container's state is unknown on %s; cvs will not launch anything until every host's state is known", hostList(facts, unknown))
	case len(busy) > 0:
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("a per_run container of this cluster file is running on %s: another `cvs run` may be using it. If none is (cvs was killed), `cvs down` removes it",
			hostList(facts, busy))
	case len(foreign) > 0:
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("a container named %q that cvs's per_run did not create exists on %s; cvs never removes containers it did not create. Remove or rename it yourself (docker rm -f %s), or set container.name to another name",
			facts[foreign[0]].Container.Name, hostList(facts, foreign), facts[foreign[0]].Container.Name)
	default:
		p.Verdict = Proceed
		p.Reason = fmt.Sprintf("launch a fresh container on all %d host(s), provision it, run, then remove it", len(facts))
	}
	if p.Verdict != Proceed {
		for i := range p.Hosts {
			p.Hosts[i].Action = Skip
		}
	}
}

func decidePersistent(p *Plan, facts []docker.Facts, o Options) {
	counts := map[docker.State][]int{}
	for i, f := range facts {
		counts[f.Container.State] = append(counts[f.Container.State], i)
	}
	n := len(facts)
	stopped := len(counts[docker.StateExited]) + len(counts[docker.StateCreated])
	switch {
	case len(counts[docker.StateRunning]) == n:
		if refuseOnImages(p, facts, o.Image, skewFix) {
			return
		}
		for i := range p.Hosts {
			p.Hosts[i].Action = Attach
		}
		p.Verdict = Proceed
		p.Reason = fmt.Sprintf("attach: the persistent container runs on all %d host(s); no launch, no provisioning", n)
		checkProvisioning(p, facts, o)
		checkDrift(p, facts, o)
		warnOldDigest(p, facts, o)
	case len(counts[docker.StateAbsent]) == n:
		p.Provision = true
		for i := range p.Hosts {
			p.Hosts[i].Action = Launch
		}
		p.Verdict = Proceed
		p.Reason = fmt.Sprintf("cold start: no container on any of the %d host(s); launch, provision and start sshd on all of them", n)
	case o.Repair && len(counts[docker.StateRunning]) < n && len(counts[docker.StateAbsent]) < n:
		repair(p, facts, counts, o)
	case stopped == n:
		if !o.Restart {
			p.Verdict = Refuse
			p.Reason = fmt.Sprintf("the persistent container is stopped on all %d host(s). `cvs up --restart` starts the existing containers again (keeping what was installed in them); `cvs down --force` removes them for a cold start", n)
			for i, f := range facts {
				p.Hosts[i].Note = noteForState(f)
			}
			return
		}
		if refuseOnImages(p, facts, o.Image, skewFix) {
			return
		}
		for i := range p.Hosts {
			p.Hosts[i].Action = Start
		}
		p.Verdict = Proceed
		p.Reason = fmt.Sprintf("restart: start the stopped containers on all %d host(s), keeping their overlays", n)
	case len(counts) == 1 && len(counts[docker.StateUnknown]) == 0:
		// One state everywhere, but not one cvs acts on (paused,
		// restarting, dead): nothing is partial, yet cvs cannot attach.
		p.Verdict = Refuse
		for i, f := range facts {
			p.Hosts[i].Note = noteForState(f)
		}
		p.Reason = fmt.Sprintf("the persistent container %q is %s on all %d host(s); cvs attaches only to running containers. Bring them back to running (e.g. docker unpause), or `cvs down --force` to remove them for a cold start",
			facts[0].Container.Name, facts[0].Container.State, n)
	default:
		p.Verdict = Refuse
		for i, f := range facts {
			p.Hosts[i].Note = noteForState(f)
		}
		var parts []string
		for _, st := range sortedStates(counts) {
			parts = append(parts, fmt.Sprintf("%s on %s", st, hostList(facts, counts[st])))
		}
		p.Reason = fmt.Sprintf("partial persistence: the persistent container %q is %s. Relaunching would wipe what is installed in the containers that still exist, so nothing was changed. `cvs up --repair` starts the stopped ones and launches the missing ones with the image the others run, never touching the running ones (`--dry-run` shows the plan); or `cvs down --force` removes them all for a cold start",
			facts[0].Container.Name, strings.Join(parts, "; "))
	}
}

// skewFix is what to do about image skew in cvs's own containers.
const skewFix = "remove the containers (cvs down --force) and cold-start, or fix the odd hosts by hand"

// refuseOnImages applies the image check of an attach: every container must
// run the same image ID, and every ID must be readable. It records the
// stale-tag warnings (naming image, the configured reference) and reports
// whether the plan was refused; fix says what to do about skew.
func refuseOnImages(p *Plan, facts []docker.Facts, image, fix string) bool {
	ids := map[string][]int{}
	var unreadable []int
	for i, f := range facts {
		if f.Container.ImageID == "" {
			unreadable = append(unreadable, i)
			continue
		}
		ids[f.Container.ImageID] = append(ids[f.Container.ImageID], i)
	}
	if len(unreadable) > 0 {
		p.Verdict = Refuse
		for _, i := range unreadable {
			p.Hosts[i].Note = "image ID unreadable"
		}
		p.Reason = fmt.Sprintf("the image ID of the container could not be read on %s; cvs will not attach without knowing that every host runs the same image", hostList(facts, unreadable))
		return true
	}
	if len(ids) > 1 {
		p.Verdict = Refuse
		for i, f := range facts {
			p.Hosts[i].Note = "runs " + f.Container.ImageID
		}
		p.Reason = fmt.Sprintf("image skew: the containers run %d different images (host → image ID below). Every host must run the same image: %s", len(ids), fix)
		return true
	}
	for _, f := range facts {
		// A container launched by digest (pinned) never needed the tag
		// on its host: its absence there is expected.
		if f.ImageID == "" && image != "" && !strings.Contains(f.Container.Image, "@sha256:") {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %s is not on this host (removed or never pulled); the container runs %s (started from %s) and keeps it, but a relaunch here would pull the tag again, which may now name other content",
				f.Host, image, docker.ShortID(f.Container.ImageID), f.Container.Image))
		}
		if f.ImageID != "" && f.ImageID != f.Container.ImageID {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: stale overlay: the container runs %s (started from %s) but %s now points to %s on this host; the container keeps its image until it is relaunched",
				f.Host, docker.ShortID(f.Container.ImageID), f.Container.Image, image, docker.ShortID(f.ImageID)))
		}
	}
	return false
}

// warnOldDigest names, with both digests, the containers launched from
// another digest than the one the tag names now (the tag was re-pushed
// since): they keep their content until relaunched.
func warnOldDigest(p *Plan, facts []docker.Facts, o Options) {
	if o.Digest == "" {
		return
	}
	old := map[string][]int{}
	var digests []string
	for i, f := range facts {
		d := LaunchedDigest(f.Container)
		if d == "" || d == o.Digest {
			continue
		}
		if _, ok := old[d]; !ok {
			digests = append(digests, d)
		}
		old[d] = append(old[d], i)
		p.Hosts[i].Note = "launched from " + d
	}
	sort.Strings(digests)
	for _, d := range digests {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: the container was launched from %s, but the image's tag now names %s (re-pushed since); it keeps its content until it is relaunched (cvs down --force, then a cold start)",
			hostList(facts, old[d]), d, o.Digest))
	}
}

// LaunchedDigest is the manifest digest container c was launched from:
// its cvs.digest label, else the digest of the reference it was started
// from; "" when neither says.
func LaunchedDigest(c docker.ContainerFacts) string {
	if d := c.Labels[LabelDigest]; d != "" {
		return d
	}
	if _, d, ok := strings.Cut(c.Image, "@"); ok {
		return d
	}
	return ""
}

func ownedPerRun(c docker.ContainerFacts, clusterFile string) bool {
	return c.Labels[LabelManaged] == "true" && c.Labels[LabelLifetime] == string(cluster.LifetimePerRun) &&
		c.Labels[LabelCluster] == clusterFile
}

func ownerNote(c docker.ContainerFacts, clusterFile string) string {
	switch {
	case c.Labels[LabelManaged] != "true":
		return "it has no cvs labels"
	case c.Labels[LabelLifetime] != string(cluster.LifetimePerRun):
		return fmt.Sprintf("cvs launched it with lifetime %q", c.Labels[LabelLifetime])
	default:
		return fmt.Sprintf("cvs launched it for another cluster file (%s)", c.Labels[LabelCluster])
	}
}

func noteForState(f docker.Facts) string {
	if f.Container.State == docker.StateUnknown && f.Error != "" {
		return "unknown: " + f.Error
	}
	return string(f.Container.State)
}

func sortedStates(m map[docker.State][]int) []docker.State {
	out := make([]docker.State, 0, len(m))
	for st := range m {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// hostList names the hosts at idx, folded (report.HostList).
func hostList(facts []docker.Facts, idx []int) string {
	names := make([]string, len(idx))
	for k, i := range idx {
		names[k] = facts[i].Host
	}
	return report.HostList(names)
}

// checkProvisioning refuses an attach to containers cvs launched with a
// setup script but that hold no provisioning record (a cold start stopped
// between launch and provisioning) or one of another script, unless the
// operator asked to run the script again there (Reprovision).
func checkProvisioning(p *Plan, facts []docker.Facts, o Options) {
	if o.SetupHash == "" || o.SetupHash == "none" {
		return
	}
	var never, other []int
	for i, f := range facts {
		label := f.Container.Labels[docker.LabelSetupHash]
		pr := f.Container.Provisioning
		switch {
		case label == "" || label == "none" || pr == nil:
		case !pr.Recorded:
			never = append(never, i)
			p.Hosts[i].Note = "never provisioned: the cold start that launched it did not finish"
		case pr.Hash != o.SetupHash:
			other = append(other, i)
			p.Hosts[i].Note = fmt.Sprintf("provisioned %s by cvs %s with another setup script (%.12s)", pr.Time, pr.Version, pr.Hash)
		}
	}
	if len(never)+len(other) == 0 {
		return
	}
	if o.Reprovision {
		for _, i := range append(never, other...) {
			p.Hosts[i].Action = Reprovision
		}
		p.Reason = fmt.Sprintf("reprovision: run the setup script again in the containers of %s, keeping their overlays; attach elsewhere", hostList(facts, append(never, other...)))
		return
	}
	p.Verdict = Refuse
	var parts []string
	if len(never) > 0 {
		parts = append(parts, fmt.Sprintf("never provisioned (a cold start that did not finish) on %s", hostList(facts, never)))
	}
	if len(other) > 0 {
		parts = append(parts, fmt.Sprintf("provisioned with another setup script than the configured one on %s", hostList(facts, other)))
	}
	for i := range p.Hosts {
		p.Hosts[i].Action = Skip
	}
	p.Reason = fmt.Sprintf("the persistent container is %s; steps would run in containers that lack what the setup script installs. `cvs up --reprovision` runs the configured script again in exactly those containers (their overlays are kept); `cvs down --force` then `cvs run install` starts over",
		strings.Join(parts, "; "))
}

// repair plans bringing a persistent set that is not whole back: running
// containers are attached to, never touched; stopped ones (exited,
// created) are started, keeping their overlays; where the container is
// really absent it is launched with the image ID the others run, and
// provisioned. Anything else (unknown, paused, restarting, dead) is
// refused with what to do; cvs never kills or removes a container here.
func repair(p *Plan, facts []docker.Facts, counts map[docker.State][]int, o Options) {
	if bad := counts[docker.StateUnknown]; len(bad) > 0 {
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("the container's state is unknown on %s; cvs repairs only what it can see", hostList(facts, bad))
		return
	}
	var odd []int
	for i, f := range facts {
		switch f.Container.State {
		case docker.StateRunning, docker.StateExited, docker.StateCreated, docker.StateAbsent:
		default:
			odd = append(odd, i)
			p.Hosts[i].Note = noteForState(f)
		}
	}
	if len(odd) > 0 {
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("the container is %s on %s; cvs does not touch it: `docker unpause %s` there (or wait for it to settle), then repair again",
			facts[odd[0]].Container.State, hostList(facts, odd), facts[odd[0]].Container.Name)
		return
	}
	ids := map[string]bool{}
	for _, f := range facts {
		if f.Container.ImageID != "" {
			ids[f.Container.ImageID] = true
		}
	}
	if len(ids) != 1 {
		p.Verdict = Refuse
		p.Reason = fmt.Sprintf("the existing containers run %d different images; a repair would have to pick one. %s", len(ids), skewFix)
		return
	}
	var image string
	for id := range ids {
		image = id
	}
	var started, launched []int
	for i, f := range facts {
		switch f.Container.State {
		case docker.StateRunning:
			p.Hosts[i].Action = Attach
		case docker.StateExited, docker.StateCreated:
			p.Hosts[i].Action = Start
			started = append(started, i)
		case docker.StateAbsent:
			p.Hosts[i].Action, p.Hosts[i].Image = Launch, image
			p.Hosts[i].Note = "launch with the image the others run (" + docker.ShortID(image) + "), then provision"
			launched = append(launched, i)
		}
	}
	p.Verdict = Proceed
	p.Provision = len(launched) > 0
	var parts []string
	if len(started) > 0 {
		parts = append(parts, "start the stopped container on "+hostList(facts, started)+" (overlay kept)")
	}
	if len(launched) > 0 {
		parts = append(parts, "launch and provision on "+hostList(facts, launched)+" with image "+docker.ShortID(image))
	}
	p.Reason = "repair: " + strings.Join(parts, "; ") + "; the running containers are not touched"
}

// checkDrift compares the run configuration each container was launched
// with (LabelConfig) with the cluster file's now: a difference is a
// warning naming the keys, once for the hosts that share it, or with
// StrictAttach a refusal.
func checkDrift(p *Plan, facts []docker.Facts, o Options) {
	if len(o.Config) == 0 || p.Verdict != Proceed {
		return
	}
	var drifted []int
	var first string
	var diffOrder []string
	byDiff := map[string][]int{}
	for i, f := range facts {
		raw, ok := f.Container.Labels[LabelConfig]
		if !ok {
			continue // launched by a cvs that did not record it
		}
		var had map[string]string
		if json.Unmarshal([]byte(raw), &had) != nil {
			continue
		}
		var diffs []string
		keys := make([]string, 0, len(o.Config))
		for k := range o.Config {
			keys = append(keys, k)
		}
		for k := range had {
			if _, ok := o.Config[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if had[k] != o.Config[k] {
				diffs = append(diffs, fmt.Sprintf("%s: launched with %q, the cluster file says %q", k, had[k], o.Config[k]))
			}
		}
		if len(diffs) == 0 {
			continue
		}
		drifted = append(drifted, i)
		d := strings.Join(diffs, "; ")
		p.Hosts[i].Note = "drift: " + d
		if first == "" {
			first = d
		}
		if _, ok := byDiff[d]; !ok {
			diffOrder = append(diffOrder, d)
		}
		byDiff[d] = append(byDiff[d], i)
	}
	for _, d := range diffOrder {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: drift: the container differs from the cluster file (%s); it keeps its settings until it is relaunched (cvs down --force, then a cold start)",
			hostList(facts, byDiff[d]), d))
	}
	if len(drifted) > 0 && o.StrictAttach {
		p.Verdict = Refuse
		for i := range p.Hosts {
			p.Hosts[i].Action = Skip
		}
		p.Reason = fmt.Sprintf("drift (strict_attach = true): the containers of %s were launched with other settings than the cluster file's (%s). Relaunch them (cvs down --force, then cvs run install) or bring the cluster file back in line",
			hostList(facts, drifted), first)
	}
}
