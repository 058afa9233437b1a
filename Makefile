# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv on first use; nothing else needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgerl-installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO   ?= build/demo
POLICY ?= stacked
EPISODES ?= 1

.PHONY: venv sshd demo model test test-arm test-board power-cuts lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[host,deploy,fleet,test]'
	touch $(STAMP)

venv: $(STAMP)

# The deploy tests start real OpenSSH servers, on loopback and in network namespaces (ip, tc).
sshd:
	@{ test -x /usr/sbin/sshd && command -v ip >/dev/null && command -v tc >/dev/null; } || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openssh-server openssh-client iproute2; }

# Main job: self-test the shipped policy on its golden frames (or export and
# verify an untrained one if none is shipped), deploy it to a local board
# folder, play there, replay on the host.
demo: venv
	@mkdir -p $(DEMO)
	@set -e; \
	if [ -f models/pong/manifest.json ]; then \
	    bundle=models/pong; $(PY) -m device selftest $$bundle; \
	else \
	    bundle=$(DEMO)/bundle; $(VENV)/bin/edgerl export --untrained --policy $(POLICY) --out $$bundle; \
	fi; \
	$(VENV)/bin/edgerl deploy $$bundle --to local:$(DEMO)/board; \
	$(VENV)/bin/edgerl run --on local:$(DEMO)/board --episodes $(EPISODES) --reports $(DEMO)/reports; \
	$(VENV)/bin/edgerl replay $$(ls -t $(DEMO)/reports/*.json | head -1) $$bundle --out $(DEMO)/game.gif

# The shipped policy, reproduced: train with PQN from scratch (resuming the run if one is
# there), export with int8 re-judged, score 10 games on the device loop into the manifest,
# draw the learning curve, and replace models/pong only if the new policy scores higher.
RUN       ?= runs/pong-pqn
FRAMES    ?= 16000000
CANDIDATE ?= build/candidate
model: venv
	$(VENV)/bin/edgerl train --algo pqn --frames $(FRAMES) --out $(RUN) $$([ -f $(RUN)/checkpoint.pt ] && echo --resume)
	rm -rf $(CANDIDATE)
	$(VENV)/bin/edgerl export $(RUN) --out $(CANDIDATE) --int8 || [ $$? -eq 3 ]  # 3: int8 refused, fp32 ships
	$(VENV)/bin/edgerl evaluate $(CANDIDATE) --episodes 10
	$(VENV)/bin/edgerl plot $(RUN) --out $(CANDIDATE)/learning_curve.png
	$(VENV)/bin/edgerl promote $(CANDIDATE) --to models/pong

test: venv sshd
	$(PY) -m pytest

# The emulated aarch64 board (Debian arm64 under qemu): slow to build the first time, cached after.
test-arm: venv sshd
	$(PY) -m pytest -m arm tests/arm

# The booting aarch64 board (qemu-system-aarch64, its own kernel, systemd as PID 1): the service, its health
# gate and power cuts. Built from test-arm's userland the first time (cached after); boots once per run.
# CI runs 1 power-cut trial (to keep .ci/run near an hour); `make power-cuts` runs the 20 docs/results.md reports.
POWER_CUTS ?= 1
test-board: venv sshd
	EDGERL_POWER_CUTS=$(POWER_CUTS) $(PY) -m pytest -m board tests/board

power-cuts: venv sshd
	EDGERL_POWER_CUTS=20 $(PY) -m pytest -m board tests/board/test_power_cuts.py

lint: venv
	$(VENV)/bin/ruff check host device deploy

bench: venv
	$(PY) bench/loop_vs_rollout.py
	$(PY) bench/loop_overhead.py
	$(PY) bench/serve_rate.py
	$(PY) bench/cold_start.py

clean:
	rm -rf build .pytest_cache
