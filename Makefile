# cvs — the two commands of the README:
#   make demo    bring up a local 3-host lab and run the main job on it
#   make test    run every test tier (unit, real sshd, end-to-end lab)
# Both install what they need (Debian packages) when run as root.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build test test-unit test-e2e fuzz deps lint demo demo-down clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cvs ./cmd/cvs
	$(GO) build -o bin/cvs-lab ./cmd/cvs-lab

deps:
	scripts/lab-deps.sh
	scripts/slurm-deps.sh

# Every tier. The real-sshd and browser tests are required here
# (CVS_REQUIRE_SSHD=1, CVS_REQUIRE_BROWSER=1): a missing sshd or chromium
# fails them instead of skipping them.
test: deps test-unit fuzz test-e2e

test-unit:
	CVS_REQUIRE_SSHD=1 CVS_REQUIRE_BROWSER=1 CVS_REQUIRE_XMLLINT=1 $(GO) test -race -count=1 ./...

# A short run of every fuzz test (their seed corpora, in testdata/fuzz,
# also run in test-unit). FUZZTIME=5m for a longer hunt.
FUZZTIME ?= 10s
FUZZ = ./shell:FuzzJoin ./provision:FuzzCommandCarriesTheScript ./cluster:FuzzLoad \
	./cluster:FuzzExpandHostList ./cluster:FuzzFoldHostList ./docker:FuzzParseProbe ./transport:FuzzSrunDemux
fuzz:
	@for f in $(FUZZ); do pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) >/tmp/cvs-fuzz.log 2>&1 || { cat /tmp/cvs-fuzz.log; exit 1; }; \
	done

# The end-to-end tier runs three times: cvs talking to the lab's Docker
# daemons through their Engine API (docker_access = "auto" picks it there),
# then through the docker CLI (CVS_DOCKER_ACCESS=cli), then through Slurm
# (CVS_E2E_ENGINE=slurm: a Slurm lab in its own folder and subnet, every
# cvs inside salloc, every per-host command an srun task). The first pass
# also runs the lab's own tests (package lab, the Slurm lab's included).
SLURM_LAB = CVS_LAB_DIR=/var/tmp/cvs-slurm-lab CVS_LAB_SUBNET=172.30.0.0/24
test-e2e: build
	CVS_REQUIRE_BROWSER=1 $(GO) test -p 1 -tags e2e -count=1 -timeout 40m ./e2e/... ./lab/...
	CVS_DOCKER_ACCESS=cli CVS_REQUIRE_BROWSER=1 $(GO) test -tags e2e -count=1 -timeout 40m ./e2e/...
	CVS_E2E_ENGINE=slurm $(SLURM_LAB) CVS_REQUIRE_BROWSER=1 $(GO) test -tags e2e -count=1 -timeout 40m ./e2e/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

# The main job on a local lab: see scripts/demo.sh.
demo:
	scripts/demo.sh

demo-down: build
	bin/cvs-lab down

clean:
	rm -rf bin

-include lab.mk
-include bench.mk
