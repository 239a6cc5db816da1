// Command cvs drives containers on a cluster of hosts over SSH: it checks
// that every host agrees, starts or attaches to the containers, and runs
// suites inside them. See the README for commands and exit codes.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
