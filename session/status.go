package session

import (
	"context"

	"github.com/cvs-tool/cvs/cluster"
)

// statusSchemaVersion is the version of `cvs status --json`; it changes
// only when a field changes meaning or disappears.
const statusSchemaVersion = 1

// StatusReport is the document `cvs status --json` prints.
type StatusReport struct {
	SchemaVersion int    `json:"schema_version"`
	Cluster       string `json:"cluster"`
	Container     string `json:"container"`
	// Image is the effective image (after the site's rewrite rules);
	// ConfiguredImage the cluster file's.
	Image           string        `json:"image"`
	ConfiguredImage string        `json:"configured_image"`
	Site            string        `json:"site,omitempty"`
	Lifetime        string        `json:"-"`
	SSHDPort        int           `json:"sshd_port"`
	Hosts           []Facts       `json:"hosts"`
	Summary         StatusSummary `json:"summary"`
	// Plan is what `cvs run` would do now, unchanged by status itself.
	Plan Plan `json:"plan"`
	// RegistryLogins says per host how its pulls of the image
	// authenticate: "config" (the SSH user's docker login, sent with the
	// API pull), "credential helper (CLI pull)", "none", or "docker CLI"
	// (the CLI pulls with the host's own login). Absent when hosts do
	// not pull (distribute = "push").
	RegistryLogins map[string]string `json:"registry_logins,omitempty"`
}

// StatusSummary counts hosts by what the probe found.
type StatusSummary struct {
	Hosts     int            `json:"hosts"`
	Reachable int            `json:"reachable"`
	Docker    int            `json:"docker"`
	States    map[string]int `json:"states"`
	// ImageIDs counts hosts by the image ID their container runs.
	ImageIDs map[string]int `json:"container_image_ids"`
	Problems int            `json:"problems"`
}

// Status is `cvs status`: probe every host in one round trip each and
// decide what the next run would do. Nothing is changed and no lock is
// taken. Summary.Problems counts hosts that could not be probed fully.
func Status(ctx context.Context, cfg *cluster.Config, opts Options) (*StatusReport, error) {
	s, err := open(ctx, cfg, openOptions{}, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return &StatusReport{SchemaVersion: statusSchemaVersion, Cluster: cfg.File,
		Container: cfg.Container.Name, Image: cfg.Container.Image, ConfiguredImage: cfg.Container.ConfiguredImage, Site: cfg.Site, Lifetime: string(cfg.Container.Lifetime),
		SSHDPort: cfg.Container.SSHDPort, Hosts: s.Facts, Summary: summarize(s.Facts), Plan: s.Plan,
		RegistryLogins: s.registryLogins(ctx)}, nil
}

func summarize(facts []Facts) StatusSummary {
	s := StatusSummary{Hosts: len(facts), States: map[string]int{}, ImageIDs: map[string]int{}}
	for _, f := range facts {
		if f.Reachable {
			s.Reachable++
		}
		if f.DockerVersion != "" {
			s.Docker++
		}
		s.States[string(f.Container.State)]++
		if f.Container.ImageID != "" {
			s.ImageIDs[f.Container.ImageID]++
		}
		if f.Error != "" {
			s.Problems++
		}
	}
	return s
}
