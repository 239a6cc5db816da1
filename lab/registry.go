package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const registryPort = 5000

// registryConfig is the config of Debian's docker-registry (distribution
// 2.8): storage in the lab cache, listening on the bridge gateway only.
func (l *Lab) registryConfig() string {
	return fmt.Sprintf(`# Written by cvs-lab; the lab's registry on its bridge gateway.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  # One fixed secret: the registry otherwise makes a random one per start
  # and warns about it.
  secret: cvs-lab-%s
`, l.paths.registryData, l.Registry(), l.id)
}

func (l *Lab) registryRunning() bool {
	pid, _ := readPID(l.paths.registryPID)
	return procAlive(pid, l.paths.registryConf)
}

// StartRegistry starts the lab registry if it is not running and removes any
// throttle SlowRegistry put on it, then waits until it answers. It is the
// fault-injection counterpart of StopRegistry and SlowRegistry, and Up uses it
// too.
func (l *Lab) StartRegistry(ctx context.Context) error {
	if err := l.unthrottleRegistry(ctx); err != nil {
		return err
	}
	if !l.registryRunning() {
		if err := os.MkdirAll(l.paths.registryData, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(l.paths.logs, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(l.paths.registryConf, []byte(l.registryConfig()), 0o644); err != nil {
			return err
		}
		os.Remove(l.paths.registryPID)
		logPath := filepath.Join(l.paths.logs, "registry.log")
		if err := startDetached(ctx, l.paths.registryPID, logPath, "docker-registry", "serve", l.paths.registryConf); err != nil {
			return err
		}
	}
	return l.waitRegistry(ctx, 20*time.Second)
}

// StopRegistry stops the lab registry: pulls on the hosts then fail with
// "connection refused" until StartRegistry.
func (l *Lab) StopRegistry(ctx context.Context) error {
	pid, _ := readPID(l.paths.registryPID)
	if err := stopPID(ctx, pid, l.paths.registryConf, 10*time.Second); err != nil {
		return fmt.Errorf("stop lab registry: %w", err)
	}
	os.Remove(l.paths.registryPID)
	return nil
}

// DefaultSlowRate is the registry bandwidth SlowRegistry uses for an empty
// rate: pulling the workload image (about 50 MB) then takes minutes.
const DefaultSlowRate = "1mbit"

var tcRate = regexp.MustCompile(`^[0-9]+(bit|kbit|mbit|gbit|bps|kbps|mbps)$`)

// SlowRegistry throttles the registry's answers to the hosts to rate (tc
// syntax: 512kbit, 2mbit; empty means DefaultSlowRate), so pulls are slow
// but succeed eventually; for pull-timeout tests. It shapes only traffic from
// the registry port on the lab bridge (SSH to the hosts keeps full speed).
// StartRegistry removes the throttle.
func (l *Lab) SlowRegistry(ctx context.Context, rate string) error {
	if rate == "" {
		rate = DefaultSlowRate
	}
	if !tcRate.MatchString(rate) {
		return fmt.Errorf("registry rate %q: want a tc rate such as 512kbit or 2mbit", rate)
	}
	if err := l.unthrottleRegistry(ctx); err != nil {
		return err
	}
	dev := l.bridgeName()
	for _, argv := range [][]string{
		// Everything else goes through the unlimited default class 1:10.
		{"tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"},
		{"tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit", "quantum", "200000"},
		{"tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", rate, "ceil", rate},
		{"tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
			"match", "ip", "src", l.Gateway().String() + "/32",
			"match", "ip", "sport", strconv.Itoa(registryPort), "0xffff", "flowid", "1:20"},
	} {
		if _, err := run(ctx, argv...); err != nil {
			return fmt.Errorf("throttle the lab registry on %s: %w", dev, err)
		}
	}
	return nil
}

// unthrottleRegistry removes SlowRegistry's qdisc, if any.
func (l *Lab) unthrottleRegistry(ctx context.Context) error {
	if !l.registryThrottled(ctx) {
		return nil
	}
	_, err := run(ctx, "tc", "qdisc", "del", "dev", l.bridgeName(), "root")
	return err
}

func (l *Lab) registryThrottled(ctx context.Context) bool {
	out, err := run(ctx, "tc", "qdisc", "show", "dev", l.bridgeName(), "root")
	return err == nil && strings.Contains(out, "htb")
}

// waitRegistry polls the registry's API base until it answers 200.
func (l *Lab) waitRegistry(ctx context.Context, timeout time.Duration) error {
	err := pollRegistry(ctx, l.Registry(), timeout,
		func(r *http.Response) bool { return r.StatusCode == http.StatusOK },
		func() bool { return !l.registryRunning() })
	if errors.Is(err, errRegistryExited) {
		return fmt.Errorf("lab registry exited: %s", tailFile(filepath.Join(l.paths.logs, "registry.log"), 800))
	}
	if err != nil {
		return fmt.Errorf("lab registry at %s does not answer: %v", l.Registry(), err)
	}
	return nil
}

// errRegistryExited: the registry process is gone (pollRegistry's exited).
var errRegistryExited = errors.New("the registry exited")

// pollRegistry GETs the registry API base at addr every 100 ms until
// answered accepts a response (nil), exited (when not nil) says the process
// is gone (errRegistryExited), or ctx or timeout ends (the last failure).
func pollRegistry(ctx context.Context, addr string, timeout time.Duration, answered func(*http.Response) bool, exited func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr + "/v2/"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if answered(resp) {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if exited != nil && exited() {
			return errRegistryExited
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
