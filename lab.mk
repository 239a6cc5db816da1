# lab.mk: the multi-host test lab (lab/, cmd/cvs-lab). Included from the top
# Makefile. Needs root; lab-up installs the Debian packages it needs first.
#
#   make lab-up [LAB_HOSTS=N]   bring up N hosts (default 3), print the cluster file
#   make lab-status             the lab's daemon, registry and hosts
#   make lab-down               remove the lab, keep the image cache
#   make lab-purge              remove the lab and its image cache
#   make lab-e2e                the end-to-end tier against the lab
#   make lab-up-slurm           a lab with Slurm (slurmd on the hosts, slurmctld
#                               in a container, srun/salloc/sbcast from here)
#   make lab-slurm-e2e          the Slurm lab test, in its own lab directory
#                               (/var/tmp/cvs-slurm-lab, 172.30.0.0/24)

GO        ?= go
LAB_HOSTS ?= 3
CVS_LAB   ?= bin/cvs-lab

.PHONY: lab-bin lab-deps lab-up lab-down lab-purge lab-status lab-e2e slurm-deps lab-up-slurm lab-slurm-e2e

lab-bin:
	$(GO) build -o $(CVS_LAB) ./cmd/cvs-lab

lab-deps:
	scripts/lab-deps.sh

lab-up: lab-deps lab-bin
	$(CVS_LAB) up $(LAB_HOSTS)

lab-down: lab-bin
	$(CVS_LAB) down

lab-purge: lab-bin
	$(CVS_LAB) down --purge

lab-status: lab-bin
	$(CVS_LAB) status

# With CVS_LAB_REUSE=1 the tests use (and leave up) a lab from lab-up.
lab-e2e: lab-deps
	$(GO) test -tags e2e -count=1 -timeout 40m ./e2e/...

slurm-deps:
	scripts/slurm-deps.sh

lab-up-slurm: lab-deps slurm-deps lab-bin
	$(CVS_LAB) up $(LAB_HOSTS) --slurm

# Brings up its own Slurm lab (CVS_SLURM_LAB_DIR, CVS_SLURM_LAB_SUBNET) and
# takes it down; CVS_SLURM_LAB_REUSE=1 reuses one and leaves it up.
lab-slurm-e2e: lab-deps slurm-deps
	$(GO) test -tags e2e -count=1 -v -timeout 20m -run TestSlurmLab ./lab/
