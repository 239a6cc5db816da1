package history

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The JUnit XML of a run (passes, a failure with its output, an
// infrastructure error, hostile names) validates against the JUnit schema
// CI systems read (testdata/junit.xsd), checked by libxml2's xmllint.
func TestJUnitValidatesAgainstTheSchema(t *testing.T) {
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CVS_REQUIRE_XMLLINT") == "1" {
			t.Fatal("CVS_REQUIRE_XMLLINT=1 but no xmllint (scripts/lab-deps.sh installs libxml2-utils)")
		}
		t.Skip("no xmllint (scripts/lab-deps.sh installs libxml2-utils)")
	}
	r := syntheticRun(t)
	var b strings.Builder
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xmllint, "--noout", "--schema", filepath.Join("testdata", "junit.xsd"), file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validates") {
		t.Fatalf("xmllint: %v\n%s\n%s", err, out, b.String())
	}
	// The schema is not a rubber stamp: a testcase without its classname
	// fails it.
	bad := strings.Replace(b.String(), `classname="`, `class="`, 1)
	os.WriteFile(file, []byte(bad), 0o600)
	if out, err := exec.Command(xmllint, "--noout", "--schema", filepath.Join("testdata", "junit.xsd"), file).CombinedOutput(); err == nil {
		t.Errorf("an invalid document validated:\n%s", out)
	}
}
