# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv on first use; nothing else needs to be installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgerl-installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO   ?= build/demo
POLICY ?= stacked

.PHONY: venv sshd demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[host,deploy,test]'
	touch $(STAMP)

venv: $(STAMP)

# The deploy tests start a real OpenSSH server on loopback.
sshd:
	@test -x /usr/sbin/sshd || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openssh-server openssh-client; }

demo: venv
	@mkdir -p $(DEMO)
	@if [ -f models/pong/manifest.json ]; then \
	    $(VENV)/bin/edgerl verify models/pong && bundle=models/pong; \
	else \
	    $(VENV)/bin/edgerl export --untrained --policy $(POLICY) --out $(DEMO)/bundle && bundle=$(DEMO)/bundle; \
	fi; \
	$(PY) -m device selftest $$bundle && \
	$(PY) -m device play $$bundle --episodes 1 --seed 0 --report $(DEMO)/report.json

test: venv sshd
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check host device deploy

bench: venv
	$(PY) bench/loop_vs_rollout.py
	$(PY) bench/loop_overhead.py

clean:
	rm -rf build .pytest_cache
