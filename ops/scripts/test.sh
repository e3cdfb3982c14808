#!/usr/bin/env bash
# Runs every test: installs missing binaries, builds once, runs all test targets from that
# build. Each integration test starts its own nats-server and PostgreSQL on free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
./ops/scripts/ensure-deps.sh
cargo build --workspace --all-targets
cargo test --workspace --all-targets -- --test-threads "${COVENANT_TEST_THREADS:-4}"
