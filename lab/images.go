package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// recipeFS holds the image recipes: the scripts run in the build chroots and
// the files copied into the images. Their bytes are part of the cache keys.
//
//go:embed images
var recipeFS embed.FS

// recipeVersion is part of every cache key; bump it to force a rebuild of
// everything after a change the keys cannot see.
const recipeVersion = "1"

var (
	// hostPackages make a lab host look like a provisioned node.
	// python3-docker (Python and the Docker SDK) is what Ansible's
	// community.docker modules need on a managed node: the run benchmark
	// (bench/run) compares cvs with them.
	hostPackages = []string{
		"openssh-server", "docker.io", "iptables", "procps", "iproute2",
		"sudo", "ca-certificates", "pigz", "python3-docker",
	}
	// aptRepoPackages go into the local apt repository, with every
	// dependency the workload image lacks.
	aptRepoPackages = []string{"openssh-server"}
)

const (
	hostImageRepo = "cvs-lab/host"
	workloadRepo  = "cvs-lab/workload"
	// workloadMarker differs between the two workload images.
	workloadMarker = "/etc/cvs-lab-workload"
)

// cacheKeys are the recipe hashes of the lab's cached artifacts. Each key
// includes the key of the base root filesystem it is built from.
type cacheKeys struct {
	base, apt, host, workload, hostSlurm string
}

func (l *Lab) cacheKeys() cacheKeys {
	base := recipeHash("base", recipeVersion, l.cfg.Suite, l.cfg.Mirror)
	host := recipeHash(base, "host", strings.Join(hostPackages, " "), recipe("host-build.sh"),
		recipe("cvs-lab-init"), recipe("cvs-lab-svc"), recipe("sshd-cvs-lab.conf"))
	return cacheKeys{
		base:     base,
		apt:      recipeHash(base, "apt", strings.Join(aptRepoPackages, " "), recipe("apt-repo-build.sh")),
		host:     host,
		workload: recipeHash(base, "workload", recipe("workload-sources.list")),
		hostSlurm: recipeHash(host, "host-slurm", strings.Join(slurmPackages, " "), recipe("slurm-build.sh"),
			recipe("cvs-lab-slurm")),
	}
}

// imageSet names the lab's images in the outer daemon and its apt repository.
type imageSet struct {
	host      string // cvs-lab/host:KEY
	hostSlurm string // cvs-lab/host-slurm:KEY, built from host only for a Slurm lab
	workload1 string // cvs-lab/workload:KEY-1
	workload2 string // cvs-lab/workload:KEY-2
	aptDir    string
	baseDir   string
}

func (l *Lab) imageSet() imageSet {
	k := l.cacheKeys()
	return imageSet{
		host:      hostImageRepo + ":" + k.host,
		hostSlurm: hostSlurmImageRepo + ":" + k.hostSlurm,
		workload1: workloadRepo + ":" + k.workload + "-1",
		workload2: workloadRepo + ":" + k.workload + "-2",
		aptDir:    filepath.Join(l.paths.aptRepos, k.apt),
		baseDir:   filepath.Join(l.paths.rootfs, "base-"+k.base),
	}
}

func recipe(name string) string {
	b, err := recipeFS.ReadFile("images/" + name)
	if err != nil {
		panic("lab: missing embedded recipe " + name) // a build error, not a runtime one
	}
	return string(b)
}

// recipeHash hashes its parts unambiguously (each is length-prefixed).
func recipeHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// ensureImages builds whatever of the image set is missing from the cache,
// logging each build with its duration, and drops cache entries of older
// recipes. The Slurm host image is built only when slurm is set.
func (l *Lab) ensureImages(ctx context.Context, slurm bool) (imageSet, error) {
	set := l.imageSet()
	hostOK := l.imageExists(ctx, set.host)
	wlOK := l.imageExists(ctx, set.workload1) && l.imageExists(ctx, set.workload2)
	aptOK := fileExists(filepath.Join(set.aptDir, "Packages"))
	slurmOK := !slurm || l.imageExists(ctx, set.hostSlurm)
	if hostOK && wlOK && aptOK && slurmOK {
		l.logf("%-34s %6s", "images: all cached", "-")
		return set, nil
	}
	if l.cfg.Seed != "" && filepath.Clean(l.cfg.Seed) != l.cfg.Dir {
		// Whatever the seed lab cannot give is built below, as without it.
		if err := l.timed("images: taken from "+l.cfg.Seed, func() error { return l.seedFrom(ctx, set, slurm) }); err != nil {
			l.logf("images: could not take them from %s (%v); building them", l.cfg.Seed, err)
		}
		hostOK = l.imageExists(ctx, set.host)
		wlOK = l.imageExists(ctx, set.workload1) && l.imageExists(ctx, set.workload2)
		aptOK = fileExists(filepath.Join(set.aptDir, "Packages"))
		slurmOK = !slurm || l.imageExists(ctx, set.hostSlurm)
	}
	if !dirExists(set.baseDir) && !(hostOK && wlOK && aptOK) {
		err := l.timed("image: debootstrap base rootfs", func() error { return l.buildBase(ctx, set.baseDir) })
		if err != nil {
			return set, err
		}
	}
	if !aptOK {
		if err := l.timed("image: local apt repository", func() error { return l.buildAptRepo(ctx, set) }); err != nil {
			return set, err
		}
	}
	if !wlOK {
		if err := l.timed("image: workload images", func() error { return l.buildWorkloads(ctx, set) }); err != nil {
			return set, err
		}
	}
	if !hostOK {
		if err := l.timed("image: host image", func() error { return l.buildHost(ctx, set) }); err != nil {
			return set, err
		}
	}
	if !slurmOK {
		if err := l.timed("image: host image with Slurm", func() error { return l.buildHostSlurm(ctx, set) }); err != nil {
			return set, err
		}
	}
	l.pruneCache(ctx, set)
	return set, nil
}

// seedFrom copies into this lab what the lab in l.cfg.Seed has built of
// set: its apt repository and base root filesystem (folders of its cache),
// and the images its daemon holds (docker save into docker load). The
// recipes' hashes name them, so only identical builds are taken.
func (l *Lab) seedFrom(ctx context.Context, set imageSet, slurm bool) error {
	seed, err := New(Config{Dir: l.cfg.Seed, Subnet: l.cfg.Subnet, Suite: l.cfg.Suite, Mirror: l.cfg.Mirror})
	if err != nil {
		return err
	}
	for _, dir := range []string{set.aptDir, set.baseDir} {
		rel, err := filepath.Rel(l.paths.cache, dir)
		if err != nil || dirExists(dir) {
			continue
		}
		src := filepath.Join(seed.paths.cache, rel)
		if !dirExists(src) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		if _, err := run(ctx, "cp", "-a", src, dir+".seed"); err != nil {
			removeTree(dir + ".seed")
			return err
		}
		if err := os.Rename(dir+".seed", dir); err != nil {
			return err
		}
	}
	refs := []string{set.host, set.workload1, set.workload2}
	if slurm {
		refs = append(refs, set.hostSlurm)
	}
	var missing []string
	for _, ref := range refs {
		if !l.imageExists(ctx, ref) && seed.imageExists(ctx, ref) {
			missing = append(missing, ref)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	save := exec.CommandContext(ctx, seed.dk.bin, seed.dk.argv(append([]string{"save"}, missing...)...)[1:]...)
	load := exec.CommandContext(ctx, l.dk.bin, l.dk.argv("load", "--quiet")[1:]...)
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		return err
	}
	out, lerr := load.CombinedOutput()
	serr := save.Wait()
	if lerr != nil || serr != nil {
		return fmt.Errorf("docker save %s | docker load: %v %v %s", strings.Join(missing, " "), serr, lerr, out)
	}
	return nil
}

func (l *Lab) imageExists(ctx context.Context, ref string) bool {
	_, err := l.dk.out(ctx, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

func (l *Lab) buildLog() string { return filepath.Join(l.paths.logs, "build.log") }

// buildBase runs debootstrap (minbase: apt, dpkg and the essentials, no
// sshd) into dir. It builds next to dir and renames, so an interrupted build
// never looks complete.
func (l *Lab) buildBase(ctx context.Context, dir string) error {
	tmp := dir + ".tmp"
	if err := removeTree(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	argv := []string{"debootstrap", "--variant=minbase", l.cfg.Suite, tmp}
	if l.cfg.Mirror != "" {
		argv = append(argv, l.cfg.Mirror)
	}
	if _, err := (command{argv: argv, logPath: l.buildLog()}).run(ctx); err != nil {
		return fmt.Errorf("debootstrap %s (needs Debian's package mirror; set %s to use another): %w", l.cfg.Suite, EnvMirror, err)
	}
	return os.Rename(tmp, dir)
}

// chroot runs a recipe script as root inside root, in a private mount
// namespace: the /proc it mounts disappears with the script, whatever
// happens, so no mount is ever left under the cache.
func (l *Lab) chroot(ctx context.Context, root, script string, env ...string) error {
	// apt needs name resolution to reach the mirror during the build.
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		os.Remove(filepath.Join(root, "etc/resolv.conf"))
		if err := os.WriteFile(filepath.Join(root, "etc/resolv.conf"), b, 0o644); err != nil {
			return err
		}
	}
	path := filepath.Join(root, "tmp", "cvs-lab-build.sh")
	if err := os.WriteFile(path, []byte(recipe(script)), 0o755); err != nil {
		return err
	}
	defer os.Remove(path)
	// A clean environment: the machine's locale or proxies must not leak
	// into the image.
	_, err := command{
		argv:     []string{"unshare", "--mount", "--propagation", "private", "chroot", root, "/bin/sh", "/tmp/cvs-lab-build.sh"},
		logPath:  l.buildLog(),
		cleanEnv: true,
		env: append([]string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive",
		}, env...),
	}.run(ctx)
	return err
}

func (l *Lab) buildAptRepo(ctx context.Context, set imageSet) error {
	err := l.chroot(ctx, set.baseDir, "apt-repo-build.sh", "CVS_LAB_APT_PACKAGES="+strings.Join(aptRepoPackages, " "))
	if err != nil {
		return fmt.Errorf("download %s for the local apt repository: %w", strings.Join(aptRepoPackages, " "), err)
	}
	tmp := set.aptDir + ".tmp"
	if err := removeTree(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	archives := filepath.Join(set.baseDir, "var/cache/apt/archives")
	debs, _ := filepath.Glob(filepath.Join(archives, "*.deb"))
	if len(debs) == 0 {
		return fmt.Errorf("apt downloaded no packages into %s (see %s)", archives, l.buildLog())
	}
	for _, d := range debs {
		if err := os.Rename(d, filepath.Join(tmp, filepath.Base(d))); err != nil {
			return err
		}
	}
	index, err := command{argv: []string{"apt-ftparchive", "packages", "."}, dir: tmp}.run(ctx)
	if err != nil {
		return fmt.Errorf("index the local apt repository: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "Packages"), []byte(index), 0o644); err != nil {
		return err
	}
	if err := removeTree(set.aptDir); err != nil {
		return err
	}
	return os.Rename(tmp, set.aptDir)
}

// copyTree copies a root filesystem, keeping owners, modes, links and
// device nodes (cp -a does all of it; Go's library does not).
func copyTree(ctx context.Context, src, dst string) error {
	if err := removeTree(dst); err != nil {
		return err
	}
	_, err := run(ctx, "cp", "-a", "--reflink=auto", src, dst)
	return err
}

// importTree imports a root filesystem as an image (tar | docker import),
// applying Dockerfile-style changes such as `CMD ["/bin/bash"]`.
func (l *Lab) importTree(ctx context.Context, dir, ref string, changes ...string) error {
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", dir, "-c", ".")
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	args = append(args, "-", ref)
	imp := exec.CommandContext(ctx, l.dk.bin, append([]string{"--host", l.dk.host}, args...)...)
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	var tarErr, impErr bytes.Buffer
	tarCmd.Stderr = &tarErr
	imp.Stdin, imp.Stderr = pipe, &impErr
	if err := tarCmd.Start(); err != nil {
		return err
	}
	if err := imp.Start(); err != nil {
		tarCmd.Process.Kill()
		tarCmd.Wait()
		return err
	}
	ierr := imp.Wait()
	if ierr != nil {
		tarCmd.Process.Kill()
	}
	terr := tarCmd.Wait()
	if ierr != nil {
		return fmt.Errorf("docker import %s: %v: %s", ref, ierr, tail(impErr.String(), 800))
	}
	if terr != nil {
		return fmt.Errorf("tar %s: %v: %s", dir, terr, tail(tarErr.String(), 800))
	}
	return nil
}

func (l *Lab) buildWorkloads(ctx context.Context, set imageSet) error {
	work := filepath.Join(l.paths.rootfs, "workload.tmp")
	if err := copyTree(ctx, set.baseDir, work); err != nil {
		return err
	}
	defer removeTree(work)
	// A workload image is what a user would pull: no apt lists, no cached
	// packages, and no source but the lab's repository.
	for _, g := range []string{"var/lib/apt/lists/*", "var/cache/apt/archives/*.deb", "etc/apt/sources.list.d/*", "etc/resolv.conf"} {
		matches, _ := filepath.Glob(filepath.Join(work, g))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(work, "etc/apt/sources.list"), []byte(recipe("workload-sources.list")), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, workloadMarker), []byte("1\n"), 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(work, "usr/sbin/sshd")); err == nil {
		return errors.New("workload image would contain sshd; the base root filesystem must not include openssh-server")
	}
	if err := l.importTree(ctx, work, set.workload1, `CMD ["/bin/bash"]`); err != nil {
		return err
	}
	// The second image is the first plus a layer that changes the marker:
	// another image ID for skew tests, sharing the big layer in the registry
	// and on the hosts.
	return l.deriveImage(ctx, set.workload1, set.workload2, workloadMarker, "2\n")
}

// deriveImage commits a copy of from with one file replaced, as to.
func (l *Lab) deriveImage(ctx context.Context, from, to, file, content string) error {
	id, err := l.dk.out(ctx, "create", "--label", "io.cvs-lab.role=build", from, "/bin/true")
	if err != nil {
		return err
	}
	defer l.dk.out(context.WithoutCancel(ctx), "rm", "-f", id)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: filepath.Base(file), Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	tw.Write([]byte(content))
	tw.Close()
	if _, err := (command{argv: l.dk.argv("cp", "-", id+":"+filepath.Dir(file)), stdin: &buf}).run(ctx); err != nil {
		return err
	}
	_, err = l.dk.out(ctx, "commit", id, to)
	return err
}

func (l *Lab) buildHost(ctx context.Context, set imageSet) error {
	work := filepath.Join(l.paths.rootfs, "host.tmp")
	if err := copyTree(ctx, set.baseDir, work); err != nil {
		return err
	}
	defer removeTree(work)
	if err := l.chroot(ctx, work, "host-build.sh", "CVS_LAB_HOST_PACKAGES="+strings.Join(hostPackages, " ")); err != nil {
		return fmt.Errorf("install %s into the host image: %w", strings.Join(hostPackages, " "), err)
	}
	files := []struct {
		recipe, path string
		mode         os.FileMode
	}{
		{"cvs-lab-init", "usr/local/sbin/cvs-lab-init", 0o755},
		{"cvs-lab-svc", "usr/local/sbin/cvs-lab-svc", 0o755},
		{"sshd-cvs-lab.conf", "etc/ssh/sshd_config.d/cvs-lab.conf", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(work, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(recipe(f.recipe)), f.mode); err != nil {
			return err
		}
	}
	return l.importTree(ctx, work, set.host, `CMD ["/usr/local/sbin/cvs-lab-init"]`)
}

// pruneCache removes images and cache directories of older recipes, so
// recipe changes do not fill the disk. The current Slurm host image is kept
// by a lab without Slurm too.
func (l *Lab) pruneCache(ctx context.Context, set imageSet) {
	keep := map[string]bool{set.host: true, set.workload1: true, set.workload2: true, set.hostSlurm: true}
	refs, err := l.dk.out(ctx, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=cvs-lab/*")
	if err == nil {
		for _, ref := range strings.Fields(refs) {
			if !keep[ref] {
				if _, err := l.dk.out(ctx, "rmi", ref); err == nil {
					l.logf("pruned old image %s", ref)
				}
			}
		}
	}
	for _, pat := range []string{filepath.Join(l.paths.rootfs, "base-*"), filepath.Join(l.paths.aptRepos, "*")} {
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			if m != set.baseDir && m != set.aptDir {
				if err := removeTree(m); err == nil {
					l.logf("pruned old cache %s", m)
				}
			}
		}
	}
}

// pushWorkloads tags the workload images with their registry references and
// pushes them, so hosts pull from the lab registry. Layers the registry
// already holds are not sent again.
func (l *Lab) pushWorkloads(ctx context.Context, set imageSet) error {
	for _, p := range [][2]string{{set.workload1, l.WorkloadImage()}, {set.workload2, l.WorkloadImage2()}} {
		if _, err := l.dk.out(ctx, "tag", p[0], p[1]); err != nil {
			return err
		}
		if _, err := l.dk.out(ctx, "push", "--quiet", p[1]); err != nil {
			return fmt.Errorf("push %s to the lab registry: %w", p[1], err)
		}
	}
	return nil
}

// PushUniqueImage pushes to the lab registry, as workload:tag, the first
// workload image plus one layer of size random bytes that no host holds, and
// returns its reference. A pull of it must fetch those bytes from the
// registry: a slow-registry test cannot be finished early by layers the
// hosts already have from other images (the workload images' own top layers
// are a few bytes).
func (l *Lab) PushUniqueImage(ctx context.Context, tag string, size int) (string, error) {
	filler := make([]byte, size)
	if _, err := rand.Read(filler); err != nil {
		return "", err
	}
	ref := l.Registry() + "/" + workloadRepo + ":" + tag
	if err := l.deriveImage(ctx, l.imageSet().workload1, ref, "/var/tmp/cvs-lab-filler", string(filler)); err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	if _, err := l.dk.out(ctx, "push", "--quiet", ref); err != nil {
		return "", fmt.Errorf("push %s to the lab registry: %w", ref, err)
	}
	return ref, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
