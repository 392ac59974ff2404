# IOC Hub — the two commands of the README's quick start, and a few helpers.
#   make run    set up .venv (and whatever the hub needs), start it on the embedded default
#   make test   set up, start what the tests need, run the whole suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
# The venv is rebuilt when the pinned requirements or the project metadata change.
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
PYTEST_ARGS ?=

.PHONY: run test setup services tools lint bench bench-switchboard bench-speech bench-nlu bench-bots bench-live clean

$(STAMP):
	scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)" "$(STAMP)"

setup: $(STAMP)

# `ioc setup` prepares the database and the switchboard (Asterisk chroot, prompts, started in
# the background with its PID tracked; `ioc asterisk stop` ends it). Without root or
# debootstrap it says what is missing and the hub runs without the switchboard.
run: setup
	$(VENV)/bin/ioc setup
	$(VENV)/bin/ioc run

services:
	scripts/ensure-services.sh

tools:
	scripts/ensure-tools.sh

# The tests start their own Asterisk and Rasa instances; `prepare` builds the cached chroot
# and prompts, and the Rasa env and model (Python 3.10 from pyenv or IOC_RASA_PYTHON).
test: setup services tools
	$(VENV)/bin/ioc setup front
	$(VENV)/bin/ioc asterisk prepare
	$(VENV)/bin/ioc setup models
	$(VENV)/bin/ioc rasa prepare
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy && $(VENV)/bin/lint-imports

bench: setup services
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk; } || { echo "bench needs wrk (apt-get install wrk)"; exit 1; }
	$(VENV)/bin/python -m bench.reports $(BENCH_ARGS)

# The switchboard against bare Asterisk (root, SIPp; about 7 minutes; BENCH_ARGS="--quick").
bench-switchboard: setup services tools
	$(VENV)/bin/ioc asterisk prepare
	$(VENV)/bin/python -m bench.switchboard $(BENCH_ARGS)

# Speech: WER, keyword recall, RTF, memory; live calls sustained (about two minutes).
bench-speech: setup tools
	$(VENV)/bin/ioc setup models
	$(VENV)/bin/python -m bench.speech $(BENCH_ARGS)

# Understanding: each candidate pipeline trained and measured on the held-out set (about
# 1.5 minutes per pipeline; BENCH_ARGS="--diet" adds Rasa's transformer).
bench-nlu: setup
	$(VENV)/bin/python -m bench.nlu $(BENCH_ARGS)

# The Telegram bot under 100 concurrent chats: webhook -> first reply, with the NLU on
# PostgreSQL and SQLite, against a bare webhook (about 3 minutes).
bench-bots: setup services
	$(VENV)/bin/python -m bench.bots $(BENCH_ARGS)

# The staff screens' live feed: 50 feed clients + a frozen one at 200 events/s (about 1.5 minutes).
bench-live: setup services
	$(VENV)/bin/python -m bench.live_feed $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
