# Ferry's entry points. `make demo` runs the whole thing on this machine;
# `make test` is what CI runs (.ci/run).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
export GOTOOLCHAIN := local

STACK := deploy/local/stack.sh
TOOLS := deploy/local/tools.sh
MODULES := ./gen/... ./platform/... ./services/... ./workflows/... ./e2e/... ./bench/...
# Integration and end-to-end tests share one PostgreSQL and one broker, and
# the machine has two cores: run packages one at a time.
# The timeout is per package: e2e's, with the source version matrix (at
# most 12 of its minutes), is the longest.
GOTEST_FLAGS ?= -count=1 -p 1 -timeout 40m

.PHONY: help tools gen gen-check lint helm-check build up down status demo test test-short test-unit test-e2e chaos clean record-history pg-versions consumer-libs

help:
	@echo "make demo   set up everything, run a task, show rows arriving in Kafka"
	@echo "make test   lint, check generated code, run unit, integration and e2e tests"
	@echo "make test-short   the fast tier: unit tests only, no stack, JVM or network"
	@echo "make up | down | status   the local stack (PostgreSQL, Kafka, Temporal)"

tools:
	@$(TOOLS) ensure

gen: tools
	@PATH="$$($(TOOLS) bin-dir):$$PATH" buf generate

# Generated code is committed; CI fails when it is stale.
gen-check: gen
	@git diff --exit-code -- gen || { echo "gen/ is stale: run 'make gen' and commit the result" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- gen)" || { echo "gen/ has uncommitted files: run 'make gen' and commit" >&2; git status --porcelain -- gen >&2; exit 1; }

lint: tools
	@echo "==> gofmt"; out=$$(gofmt -l gen platform services workflows e2e tools bench); test -z "$$out" || { echo "not gofmt-formatted: $$out" >&2; exit 1; }
	@echo "==> go vet"; go vet $(MODULES)
	@echo "==> buf lint"; $$($(TOOLS) path buf) lint
	@# Against main: on a branch this catches wire-breaking proto changes; on main it checks the working tree.
	@echo "==> buf breaking"; $$($(TOOLS) path buf) breaking --against '.git#branch=main'
	@echo "==> golangci-lint"; $$($(TOOLS) path golangci-lint) run ./platform/... ./services/... ./workflows/... ./e2e/... ./bench/...
	@echo "==> workflowcheck"; $$($(TOOLS) path workflowcheck) ./workflows/...
	@$(MAKE) --no-print-directory helm-check

# The chart, with its defaults and with every option on (ci/*-values.yaml),
# by the pinned helm; e2e/helm_test.go then holds what it renders to the
# binaries.
CHART := deploy/helm/ferry
helm-check:
	@$(TOOLS) ensure helm >/dev/null
	@helm=$$($(TOOLS) path helm); for v in "" $(CHART)/ci/*-values.yaml; do \
		echo "==> helm lint $${v:-(defaults)}"; "$$helm" lint --strict $(CHART) $${v:+--values "$$v"}; \
		echo "==> helm template $${v:-(defaults)}"; "$$helm" template ferry $(CHART) $${v:+--values "$$v"} >/dev/null; \
	done

build:
	go build $(MODULES)

up:
	@$(STACK) up

down:
	@$(STACK) down

status:
	@$(STACK) status

# The demo needs only the runtime tools, not the linters.
demo:
	@$(TOOLS) ensure temporal grpcurl kcat
	@$(STACK) up
	@$(STACK) up ferry
	@deploy/local/demo.sh

# The fast tier: every module's tests under -short, where each test that
# needs a real service skips (testenv.Integration). The stack's env is unset
# and `make test` runs it before starting the stack, so that on a clean
# clone a test that reaches a service anyway fails here.
test-short:
	unset CI $$(compgen -e | grep '^FERRY_' || true); go test -short -count=1 $(MODULES)

test-unit:
	go test $(GOTEST_FLAGS) ./gen/... ./platform/... ./services/... ./workflows/... ./bench/...

test-e2e:
	go test $(GOTEST_FLAGS) -v ./e2e/...

# The fault matrix (e2e/chaos_test.go) against the running stack (make up):
# CHAOS_ROUNDS seeded rounds, then their table. CHAOS_SEED=<a round's
# seed> CHAOS_ROUNDS=1 replays a round; the seed is the clock's by default.
# .ci/run runs one round of a fixed plan inside test-e2e. The whole log
# stays in a temporary file, named at the end.
CHAOS_ROUNDS ?= 20
CHAOS_SEED ?= $(shell date +%s%N)
chaos:
	@eval "$$($(STACK) env)"; table=$$(mktemp); log=$$(mktemp --suffix=.chaos.log); status=0; \
	FERRY_CHAOS_ROUNDS=$(CHAOS_ROUNDS) FERRY_CHAOS_SEED=$(CHAOS_SEED) FERRY_CHAOS_TABLE=$$table \
		go test -count=1 -p 1 -timeout 150m -run '^TestChaos$$' -v ./e2e/ >"$$log" 2>&1 || status=$$?; \
	grep -E '^ *--- (PASS|FAIL)' "$$log" || true; cat "$$table"; rm -f "$$table"; \
	echo "make chaos: exit $$status; the whole log is $$log"; exit $$status

# The other PostgreSQL majors the version matrix runs on, fetched once and
# cached (deploy/local/stack.sh pg-bin), so no test waits on a download.
pg-versions:
	@$(STACK) pg-bin 12 13 14 15 16 17 >/dev/null

# The Flink jars the consumer harness (e2e/consumers) runs, fetched once and
# cached the same way.
consumer-libs:
	@$(STACK) consumer-libs >/dev/null

test: lint gen-check test-short up pg-versions consumer-libs
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-e2e
	@$(MAKE) --no-print-directory bench-smoke

clean:
	@$(STACK) clean

# Records a finished task's history for the replay test, e.g.
#   make record-history TASK=e2e-kill-123 NAME=kill-and-resume
record-history:
	@test -n "$(TASK)" -a -n "$(NAME)" || { echo "usage: make record-history TASK=<workflow id> NAME=<file stem>" >&2; exit 1; }
	@$$($(TOOLS) path temporal) workflow show --address 127.0.0.1:7233 --workflow-id "$(TASK)" --output json \
		> workflows/task/testdata/$(NAME).history.json
	@echo "recorded workflows/task/testdata/$(NAME).history.json"

# Benchmarks (bench/README.md): Ferry against baselines run beside it.
# `make bench` writes bench/results/latest.md and latest.json; pass flags
# with e.g. BENCH_FLAGS='-n 100000 -runs 5'.
.PHONY: bench bench-smoke
BENCH_FLAGS ?=

bench: up
	@eval "$$($(STACK) env)"; go run ./bench/cmd/ferrybench $(BENCH_FLAGS)

# A correctness smoke test of the harness, not a timing test: 5,000 rows,
# one run, report in a temporary folder, Debezium included (about 20 s; its
# jars are fetched with Maven on first use); the delivery scenario with 2,000
# rows per codec and format and one second of paced latency; the mixed
# scenario with 5,000 changes (its seeded workload: 3,531 INSERTs, 979
# UPDATEs, 490 DELETEs) and the latency scenario for one second at 2,000
# rows/s (2,400 rows with the warm-up); full sync of one 5,000-row table and
# three 1,000-row tables; Debezium included in all of these; one 20,000-row
# transaction through Ferry in DTS Avro with zstd (no Debezium), and
# capture's decode of 20,000 rows in both shapes, and on protocols 2 and 4
# (streamproto, a private PostgreSQL 17); a 50-table task
# (tables10k). ferrybench itself fails unless every row arrived; its
# latest.json is then checked by `ferrybench check-smoke` (smoke.go), against
# the report's own parameters.
bench-smoke: up
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; eval "$$($(STACK) env)"; \
		go run ./bench/cmd/ferrybench -n 5000 -runs 1 -ferry-timeout 2m -out "$$out" \
			-backlog-combos canal/lz4 -mixed-n 5000 -mixed-prefill 2000 \
			-delivery-n 2000 -latency-rate 2000 -latency-for 1s -latency-warmup 200ms \
			-fullsync-rows 5000 -fullsync-tables 3 -fullsync-table-rows 1000 -fullsync-runs 1 \
			-bigtxn-n 20000 -bigtxn-combos avro/zstd -bigtxn-debezium=false -decode-n 20000 -streamproto-n 20000 -t10k-tables 50 >"$$out/stdout"; \
		test -s "$$out/latest.md" -a -s "$$out/latest.json" || { echo "bench-smoke: no report" >&2; exit 1; }; \
		go run ./bench/cmd/ferrybench check-smoke "$$out/latest.json" || { cat "$$out/latest.md" >&2; exit 1; }; \
		echo "bench-smoke: ok, 5000 of 5000 rows arrived through Ferry and through Debezium, delivery measured for 3 formats x 4 codecs, 5000 mixed changes and 2400 paced rows arrived through both, full sync of 5000 + 3 x 1000 rows through both, a 20000-row transaction arrived through Ferry (DTS Avro, zstd), capture decoded both shapes, a 50-table task reached incremental, and the report was written"
