# Entry points: `make demo` (the main job) and the proof in three tiers, named by what they need:
#   make test         this machine's kernel: units, real sshd, network namespaces, ALE, onnxruntime, TorchRL
#   make test-board   the emulated aarch64 boards: the qemu-user chroot and the booting board (systemd)
#   make campaigns    the long runs behind docs/results.md's figures (CI runs one short trial of each in the tiers)
#                     (make fidelity-campaign: 500 policy x env configurations drawn from a fresh seed)
# Each creates .venv on first use and installs the Debian packages its tests open (tools/system_needs.py).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgerl-installed
DEMO   ?= build/demo
POLICY ?= stacked
EPISODES ?= 1

.PHONY: venv sshd board-tools bench-tools demo model test test-arm test-board campaigns fidelity-campaign power-cuts lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[host,deploy,fleet,channel,test]'
	touch $(STAMP)

venv: $(STAMP)

# The deploy tests start real OpenSSH servers, on loopback and in network namespaces (ip, tc).
sshd:
	@$(PYTHON) tools/system_needs.py install test

# debootstrap, qemu-user, qemu-system-aarch64, qemu-img and the ROMs qemu loads (ipxe-qemu).
board-tools:
	@$(PYTHON) tools/system_needs.py install board

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

# pytest-xdist's workers (measured against serial in docs/results.md "Tests"); the tests marked `alone` time
# something against the clock and run afterwards, with the machine to themselves.
# Both runs share what is expensive to make (exports, the boards' venv) through build/made-once.
# The second run collects only the files that mark a test `alone` (collecting every file costs 8 s of imports).
JOBS ?= 2
MADE_ONCE := $(CURDIR)/build/made-once
ALONE_FILES = $(shell grep -rl --include='test_*.py' 'mark\.alone' tests)
test: venv sshd
	rm -rf $(MADE_ONCE)
	EDGERL_MADE_ONCE=$(MADE_ONCE) $(PY) -m pytest -n $(JOBS) --dist loadgroup -m 'not arm and not board and not alone'
	EDGERL_MADE_ONCE=$(MADE_ONCE) $(PY) -m pytest -p no:xdist -m 'alone and not arm and not board' $(ALONE_FILES)

# The emulated aarch64 boards: the Debian arm64 chroot (qemu-user) and the booting board (qemu-system-aarch64, its
# own kernel, systemd as PID 1: the service, its health gate, power cuts). Both images are built the first time and
# cached in ~/.cache/edgerl; the board boots once per run. `make test-arm` is the chroot alone.
POWER_CUTS ?= 1
test-board: venv sshd board-tools
	EDGERL_POWER_CUTS=$(POWER_CUTS) $(PY) -m pytest -p no:xdist -m 'arm or board' tests/arm tests/booting_board

test-arm: venv sshd board-tools
	$(PY) -m pytest -p no:xdist -m arm tests/arm

# The figures docs/results.md quotes, each at full length: twenty link cuts, the shipped int8 model's 10 games,
# replays of the recorded evaluation, and 20 power cuts on the booting board. Alone on the machine (timing).
campaigns: venv sshd board-tools
	EDGERL_CAMPAIGN=full $(PY) -m pytest -p no:xdist -m campaign tests --ignore=tests/host/bundle/test_drawn_matrix.py
	$(MAKE) fidelity-campaign
	$(MAKE) power-cuts

# The drawn fidelity matrix at full length: 500 configurations from a fresh seed (nothing timed: two workers).
# Each case's outcome goes to build/drawn-matrix/SEED.jsonl; `python tests/drawn_cases.py SEED INDEX` redraws one.
DRAW_SEED := $(or $(DRAW_SEED),$(shell date +%s))
fidelity-campaign: venv
	@echo "drawing 500 cases from seed $(DRAW_SEED)"
	EDGERL_CAMPAIGN=full EDGERL_DRAW_SEED=$(DRAW_SEED) $(PY) -m pytest -n $(JOBS) -m campaign \
	    tests/host/bundle/test_drawn_matrix.py; status=$$?; \
	$(PY) tests/drawn_cases.py --summary build/drawn-matrix/$(DRAW_SEED).jsonl; exit $$status

power-cuts: venv sshd board-tools
	EDGERL_POWER_CUTS=20 $(PY) -m pytest -p no:xdist -m board tests/booting_board/test_power_cuts.py

lint: venv
	$(VENV)/bin/ruff check host device deploy

# cyclictest (rt-tests): the machine's own wake-up latency, printed beside the serve loop's.
bench-tools:
	@$(PYTHON) tools/system_needs.py install bench

bench: venv bench-tools
	$(PY) bench/loop_vs_rollout.py
	$(PY) bench/loop_overhead.py
	$(PY) bench/serve_rate.py
	$(PY) bench/cold_start.py

clean:
	rm -rf build .pytest_cache
