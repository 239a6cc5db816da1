# bench.mk: the side-by-side fan-out benchmark (included by the Makefile).
#
#   make bench-fanout                       # N = 10, 50, 200; 5 runs each
#   make bench-fanout BENCH_N=50 BENCH_RUNS=3 BENCH_ARGS='-ref=false'
#   make bench-fanout BENCH_ARGS=-docker-socket=/var/tmp/cvs-lab/run/docker.sock   # status through the Engine API (lab up)
#
# It installs the baselines if missing (scripts/bench-deps.sh, needs root
# and apt), builds cvs, starts loopback sshd hosts on 127.0.10.x, and
# writes bench/RESULTS.md. Per-run logs and generated files stay in
# bench/out/. Run it alone on the machine: it times wall clock.

GO ?= go
BENCH_N ?= 10,50,200
BENCH_RUNS ?= 5
BENCH_ARGS ?=
# The version cvs reports, recorded in the results: the commit, "-dirty"
# when the working tree had changes.
BENCH_CVS_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: bench-fanout bench-deps

bench-deps:
	scripts/bench-deps.sh

bench-fanout: bench-deps
	$(GO) build -ldflags "-X main.version=$(BENCH_CVS_VERSION)" -o bin/cvs ./cmd/cvs
	$(GO) build -o bin/bench-fanout ./bench/fanout
	bin/bench-fanout -n $(BENCH_N) -runs $(BENCH_RUNS) -cvs bin/cvs -out bench/RESULTS.md $(BENCH_ARGS)

# The image distribution benchmark on the lab (8 hosts, a 1 GiB image):
#   make bench-image
#   make bench-image BENCH_IMAGE_ARGS='-hosts 4 -size 256 -runs 1'
BENCH_IMAGE_ARGS ?=

.PHONY: bench-image
bench-image: deps
	$(GO) build -ldflags "-X main.version=$(BENCH_CVS_VERSION)" -o bin/cvs ./cmd/cvs
	$(GO) build -o bin/bench-image ./bench/image
	bin/bench-image -cvs bin/cvs -out bench/IMAGE-RESULTS.md $(BENCH_IMAGE_ARGS)

# One `cvs run test` on persistent containers, on the lab (8 hosts):
# the Docker API vs the docker CLI vs exec vs pdsh vs Ansible:
#   make bench-run
#   make bench-run BENCH_RUN_ARGS='-hosts 3 -runs 3'
BENCH_RUN_ARGS ?=

.PHONY: bench-run
bench-run: deps bench-deps
	$(GO) build -ldflags "-X main.version=$(BENCH_CVS_VERSION)" -o bin/cvs ./cmd/cvs
	$(GO) build -o bin/bench-run ./bench/run
	bin/bench-run -cvs bin/cvs -out bench/RUN-RESULTS.md $(BENCH_RUN_ARGS)

# The scale benchmark: the controller's CPU, memory and uplink per host for
# SSH fan-out (sshd farm), pushes over SSH (the lab) and srun + sbcast (the
# Slurm lab), extrapolated to 1000 and 5000 hosts. Needs root (iptables
# counts the uplink); brings the labs up to the largest -lab count.
#   make bench-scale
#   make bench-scale BENCH_SCALE_ARGS='-farm 100 -lab 2 -runs 1'
BENCH_SCALE_ARGS ?=

.PHONY: bench-scale
bench-scale: deps
	$(GO) build -ldflags "-X main.version=$(BENCH_CVS_VERSION)" -o bin/cvs ./cmd/cvs
	$(GO) build -o bin/bench-scale ./bench/scale
	bin/bench-scale -cvs bin/cvs -out bench/SCALE-RESULTS.md $(BENCH_SCALE_ARGS)
