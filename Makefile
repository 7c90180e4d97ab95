# pubsocket — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 7145

.PHONY: run test lint typecheck unit conformance bench install dev clean proto

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

## make run: start examples/chat (built-in hub at /ws/chat) on http://$(HOST):$(PORT)
run: $(VENV)/.installed
	$(VENV)/bin/pubsocket env --file .env
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/pubsocket serve examples/chat

## make test: ruff, mypy --strict and the whole pytest suite
test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/mypy --strict
	$(VENV)/bin/pytest -W error -q

conformance: $(VENV)/.installed
	bash conformance/run.sh

## make bench: Node ws and uWebSockets (bench/node, installed with npm ci) baselines vs
## pubsocket (CPU per delivery vs uWebSockets, chat p99 at 10k/20k deliveries/s), the Redis scale-out and history-cost runs,
## then acked publishes/s and recovery latency (the Redis ones start a throwaway
## redis-server of their own: no Redis service needed), then Centrifuge vs plain
## (fan-out to 1000, idle memory per connection; ~1 min) and fan-out to 1000 with a
## Centrifugo config file's namespaces vs without (bench/namespaces_bench.py), then Publisher vs a node's
## publish and the outbox's commit-to-delivery latency (a throwaway PostgreSQL too),
## then a bystander's p99 under each attack of tests/attack vs none (bench/attack_bench.py),
## then fan-out to 1000 on this tree vs main before the bounded-cost work
## (bench/before_after.py, interleaved), then POST /api/publish in Centrifugo's dialect
## vs ours (bench/server_api_bench.py), then permessage-deflate vs plain (wire bytes,
## fan-out CPU, idle RSS per connection) and TLS vs plain (bench/deflate_bench.py),
## then a command POSTed on another node than its session's, routed through Redis, vs
## one fed locally (bench/relay_bench.py: µs per command, "no sticky sessions: the cost"),
## then the pubsocket.v1 HTTP fallback vs WebSocket: time to fall back in Chromium (p50,
## p99), fan-out to 1000 and idle RSS per connection (bench/fallback_bench.py), then
## idle RSS per subscribed connection over 10,000 connections, plain / v1 / Centrifuge,
## with Node ws and uWebSockets when bench/node has them (bench/idle_bench.py; ~2 min)
bench: $(VENV)/.dev
	npm ci --prefix bench/node --no-audit --no-fund
	$(PY) bench/run.py
	$(PY) bench/redis_bench.py
	$(PY) bench/delivery_bench.py
	$(PY) bench/centrifuge_bench.py
	$(PY) bench/namespaces_bench.py
	$(PY) bench/publisher_bench.py
	$(PY) bench/attack_bench.py
	$(PY) bench/before_after.py
	$(PY) bench/server_api_bench.py
	$(PY) bench/deflate_bench.py
	$(PY) bench/relay_bench.py
	$(PY) bench/fallback_bench.py
	$(PY) bench/idle_bench.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache

## make proto: regenerate the Centrifuge Protobuf code from client.proto (needs grpcio-tools)
proto:
	PYTHON=$(PY) sh src/pubsocket/protocols/centrifuge/_pb/generate.sh
