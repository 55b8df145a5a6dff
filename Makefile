# WasmWiz developer targets. `make` alone lists them. CI is .ci/run, which
# these targets mirror; tool versions are read from it so both stay pinned alike.

SHELL := /usr/bin/env bash
GO ?= go
# go.mod's toolchain line; machines with GOTOOLCHAIN=local would ignore it.
export GOTOOLCHAIN ?= $(shell sed -n 's/^toolchain //p' go.mod)
BIN ?= bin/wasmwiz
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
IMAGE ?= wasmwiz:$(VERSION)

STATICCHECK_VERSION := $(shell sed -n 's/^STATICCHECK_VERSION=//p' .ci/run)
GOVULNCHECK_VERSION := $(shell sed -n 's/^GOVULNCHECK_VERSION=//p' .ci/run)
KUSTOMIZE_VERSION := $(shell sed -n 's/^KUSTOMIZE_VERSION=//p' .ci/run)

WASMWIZ_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
WASMWIZ_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## static binary bin/wasmwiz (CGO_ENABLED=0) with version and commit
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/wasmwiz
	@$(BIN) version

.PHONY: run
run: ## go run ./cmd/wasmwiz serve (embedded SQLite, in-memory limits)
	$(GO) run ./cmd/wasmwiz serve

.PHONY: test
test: ## unit tests; integration tests skip without services (README: go test ./...)
	$(GO) test ./...

.PHONY: test-race
test-race: ## unit tests with the race detector
	$(GO) test -race -count=1 ./...

.PHONY: test-integration
test-integration: ## every test with -race against local PostgreSQL and Redis, none may skip
	WASMWIZ_TEST_POSTGRES_URL='$(WASMWIZ_TEST_POSTGRES_URL)' \
	WASMWIZ_TEST_REDIS_URL='$(WASMWIZ_TEST_REDIS_URL)' \
	WASMWIZ_TEST_REQUIRE_SERVICES=1 \
		$(GO) test -race -count=1 ./...

.PHONY: test-deploy
test-deploy: ## checks of the deploy files against the code (internal/deploytest)
	$(GO) test -count=1 ./internal/deploytest/

.PHONY: lint
lint: ## gofmt, go vet, staticcheck, shellcheck, yamllint (pinned as in .ci/run)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	shellcheck $$(git ls-files '*.sh' .ci/run)
	yamllint --strict $$(git ls-files '*.yml' '*.yaml' .yamllint)

.PHONY: vulncheck
vulncheck: ## govulncheck against the offline database that .ci/run builds
	bash .ci/run vulncheck

.PHONY: k8s
k8s: ## render the production Kubernetes overlay to stdout
	$(GO) run sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION) build deploy/k8s/overlays/production

.PHONY: testdata
testdata: ## rebuild the test modules (.wat/.c -> .wasm) of internal/testmodule
	$(MAKE) -C internal/testmodule/testdata

.PHONY: bench
bench: ## Go benchmarks of every package (figures go to docs/PERFORMANCE.md)
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: prove
prove: ## attack and fault tests on PostgreSQL and Redis, one at a time; writes docs/RELIABILITY.md
	WASMWIZ_TEST_POSTGRES_URL='$(WASMWIZ_TEST_POSTGRES_URL)' \
	WASMWIZ_TEST_REDIS_URL='$(WASMWIZ_TEST_REDIS_URL)' \
		bash scripts/prove.sh

.PHONY: docker
docker: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

.PHONY: compose-up
compose-up: ## two replicas behind a proxy, PostgreSQL, Redis, Prometheus, Grafana
	docker compose up --build -d

.PHONY: ci
ci: ## everything CI runs (.ci/run)
	bash .ci/run

.PHONY: clean
clean: ## remove bin/
	rm -rf bin/
