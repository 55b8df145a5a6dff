#!/usr/bin/env bash
# prove.sh (`make prove`) runs the attack and fault tests with the real
# PostgreSQL and Redis, one test at a time so that their figures are their
# own, and writes what they measured to docs/RELIABILITY.md: one row per
# attack or fault, what held (what the test asserts), the figures, and the
# machine and date. The tests assert behaviour only; each records its
# figures through testenv.Prove when WASMWIZ_PROVE_OUT names a file.
#
# Needs PostgreSQL and Redis as for `make test-integration`
# (WASMWIZ_TEST_POSTGRES_URL, WASMWIZ_TEST_REDIS_URL; the defaults below are
# the local ones .ci/run starts) and jq. Takes about three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

export WASMWIZ_TEST_POSTGRES_URL="${WASMWIZ_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
export WASMWIZ_TEST_REDIS_URL="${WASMWIZ_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
export WASMWIZ_TEST_REQUIRE_SERVICES=1
doc="${1:-docs/RELIABILITY.md}"

# The tests, by package. A new attack or fault test joins a list here and
# calls testenv.Prove.
serve_tests='TestServeLargeBodiesBounded|TestServeCompileBombDoesNotMakeOthersWait|TestServeTierLimits|TestServeOutputCapIsPerRun|TestServeBodyFlood|TestServeSlowConnections|TestServeOverload|TestServeDatabaseHang|TestServeHostMemoryAttacks|TestServeAuthFailuresBounded|TestServeUserRequestsBounded|TestServeWebhookOneUserAtATime|TestServeStoredRunQuota|TestServeAmplificationBounded|TestServeCompileCacheChurn'
worker_tests='TestCompileMemoryBomb|TestPoolHostileMemory|TestPoolMemoryAttackDoesNotMakeOthersWait|TestPoolHostileGuestsDoNotStallOthers'

out=$(mktemp)
trap 'rm -f "$out"' EXIT
export WASMWIZ_PROVE_OUT="$out"
# The code measured: described before this file is rewritten.
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
start=$(date -u +%Y-%m-%dT%H:%MZ)
# -p 1 and -parallel 1: one package, and one test, at a time.
go test -count=1 -p 1 -parallel 1 -timeout 30m -run "^($serve_tests)\$" ./cmd/wasmwiz
go test -count=1 -p 1 -parallel 1 -timeout 30m -run "^($worker_tests)\$" ./internal/worker
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)
{
  cat <<HEAD
# Reliability: attacks and faults, measured

Produced by \`make prove\` (scripts/prove.sh), which runs the attack and fault tests one at a time
against PostgreSQL and Redis and writes this file; rerun it to measure your machine. Each test
asserts what held; the figures are what it measured on the way, and no test asserts them.

- **Date:** $start (UTC)
- **Commit:** $commit
- **Machine:** $(nproc) CPUs (${cpu:-unknown}), ${mem:-unknown} of memory, $(uname -sr); $(go version | cut -d' ' -f3)
- **Load average (1, 5, 15 min):** $load_before before, $load_after after (other work shared the machine)

## What the figures mean

- **peak RSS:** the largest resident memory of the test's process tree (the server, the load the
  test generates, and the worker processes), summed and sampled every 50 ms; "worker" figures are
  one worker process's anonymous resident memory, as the worker tests measure it against its bound.
- **time to answer:** from sending the request to its answer (median and maximum when there are
  several).
- **other tenant's latency:** another caller's runs (hello world) sent while the attack runs.
- **useful throughput:** runs completed per second by callers that run back to back, first at the
  replica's capacity (as many callers as run slots), then at 16 times it. The callers run in the
  test's own process, on the same CPUs as the server, so what they spend is part of what the
  overload costs; the server's own processor time (the serve process and its workers, from /proc)
  is given per run at capacity, and per refusal once the overload's runs are paid at that rate.
- **records written:** usage records of runs answered during a fault, found after it.

## Attacks and faults

| Attack or fault | What held (asserted) | Figures (measured) | Test |
|---|---|---|---|
HEAD
  jq -r '
    def cell: gsub("\\|"; "\\|") | gsub("\n"; " ");
    "| \(.row | cell) | \(.held | cell) | \(.figures | to_entries | map("\(.key): \(.value)" | cell) | join("<br>")) | `\(.test | cell)` |"
  ' "$out"
} >"$doc"
echo "wrote $doc ($(jq -s length "$out") rows)"
