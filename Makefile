.DEFAULT_GOAL := help
GO ?= go

# Build with the toolchain go.mod names (`toolchain go1.26.11`, a patched
# standard library); the go command fetches it through the module proxy on
# first use. GOTOOLCHAIN=local (as in Debian's and the golang image's go.env)
# would silently keep an older, vulnerable one. See docs/vulnerabilities.md.
export GOTOOLCHAIN := auto

# Pinned tools; CI installs the same versions once (.ci/run).
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
GOVULNCHECK ?= $(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The vulnerability database is built from this version of golang.org/x/vulndb
# Pinned so CI is deterministic; bump it deliberately to take in new advisories.
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB_DIR ?= $(or $(TMPDIR),/tmp)/orchable-vulndb
# Advisories without a fix that do not apply to this service; each is
# explained in docs/vulnerabilities.md. `make vuln` fails on any other
# reachable one, and on one of these once a fix exists.
VULN_ACCEPTED := GO-2026-6872 GO-2026-6875

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
lint: ## Run golangci-lint (pinned; configuration in .golangci.yaml)
	$(GOLANGCI_LINT) run ./...

.PHONY: tidy
tidy: ## Tidy go.mod and go.sum of both modules (the service and bench/)
	$(GO) mod tidy
	cd bench && $(GO) mod tidy

.PHONY: tidy/check
tidy/check: ## Fail if go.mod or go.sum of either module is not tidy (prints the diff)
	$(GO) mod tidy -diff
	cd bench && $(GO) mod tidy -diff

.PHONY: vuln
vuln: ## Check for known vulnerabilities offline (database built from the golang.org/x/vulndb module)
	$(GO) run ./scripts/vulndb build -out $(VULNDB_DIR) -version $(VULNDB_VERSION)
	$(GOVULNCHECK) -db file://$(VULNDB_DIR) -format json ./... > $(VULNDB_DIR).json
	$(GO) run ./scripts/vulndb gate -accept '$(VULN_ACCEPTED)' < $(VULNDB_DIR).json

.PHONY: verify
verify: tidy/check lint vuln ## The gates CI runs besides the tests: tidy, lint, known vulnerabilities

.PHONY: migrate
migrate: ## Apply the migrations to DATABASE_URL (with the local shim)
	$(GO) run . migrate --local

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 30s each)
	@# Go 1.26's fuzz coordinator can report "context deadline exceeded" when
	@# a duration -fuzztime ends while a worker is mid-call (golang/go#75804,
	@# fixed in Go 1.27), on a busy machine. That failure writes no failing
	@# input; any real failure does ("Failing input written to ..."), so only
	@# the former is let through, and said.
	@for t in $$(grep -rhoE 'func Fuzz[A-Za-z0-9_]+' --include=*_test.go . | awk '{print $$2}' | sort -u); do \
	  pkg=$$(grep -rlE "func $$t\(" --include=*_test.go . | head -1 | xargs dirname); \
	  echo "== $$t ($$pkg)"; out=$$(mktemp); \
	  $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$${FUZZTIME:-30s} $$pkg > $$out 2>&1; rc=$$?; cat $$out; \
	  if [ $$rc -ne 0 ]; then \
	    if grep -qx '    context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
	      echo "== $$t: the fuzz coordinator's deadline race (golang/go#75804), no failing input: not a failure of $$t"; \
	    else rm -f $$out; exit 1; fi; \
	  fi; rm -f $$out; \
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
