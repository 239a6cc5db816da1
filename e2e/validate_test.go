//go:build e2e

package e2e

import "testing"

// The cluster file cvs-lab writes must pass cvs's strict loader as is.
func TestCVSValidateLabClusterFile(t *testing.T) {
	runsIn(t, apiPass|slurmPass)
	stdout, stderr, code := runCVS(t, "validate")
	if code != 0 {
		t.Fatalf("cvs validate %s: exit %d\nstdout: %s\nstderr: %s", Lab(t).ClusterFile(), code, stdout, stderr)
	}
}
