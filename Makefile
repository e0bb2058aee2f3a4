.DEFAULT_GOAL := help
GO ?= go

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-zA-Z/_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the service locally on its embedded default and show a batch completing
	@bash scripts/ensure-postgres.sh
	$(GO) run . dev

.PHONY: test
test: ## Run the whole test suite (needs PostgreSQL at 127.0.0.1:5432; started if down), a benchmark smoke run and every fuzz target for FUZZTIME (8s)
	@bash scripts/ensure-postgres.sh
	$(GO) test -race -count=1 -timeout 20m ./...
	cd bench && $(GO) test -count=1 -timeout 10m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$${FUZZTIME:-8s}

.PHONY: test/short
test/short: ## Run the tests without the race detector
	$(GO) test -count=1 ./...

.PHONY: lint
lint: ## Run golangci-lint (pinned)
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run ./...

.PHONY: migrate
migrate: ## Apply the migrations to DATABASE_URL (with the local shim)
	$(GO) run . migrate --local

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s each)
	@for t in $$(grep -rhoE 'func Fuzz[A-Za-z0-9_]+' --include=*_test.go . | awk '{print $$2}' | sort -u); do \
	  pkg=$$(grep -rlE "func $$t\(" --include=*_test.go . | head -1 | xargs dirname); \
	  echo "== $$t ($$pkg)"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$${FUZZTIME:-30s} $$pkg || exit 1; \
	done

.PHONY: bench
bench: ## Run the benchmark scenarios (see docs/performance.md)
	cd bench && $(GO) run . all

.PHONY: db/reset
db/reset: ## Drop and recreate the local development database
	psql -h 127.0.0.1 -U postgres -d postgres -c 'drop database if exists orchable with (force)' -c 'create database orchable'

.PHONY: sql
sql: ## Write the next migration from the changed function sources in sql/functions (docs/sql-source.md)
	$(GO) run ./migrations/cmd/sqlgen
