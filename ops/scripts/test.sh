#!/usr/bin/env bash
# Runs every test: installs missing binaries, builds once, runs all test targets from that
# build (each integration test starts its own nats-server and PostgreSQL on free ports),
# then the README's first command as a new user runs it (ops/scripts/first-contact.sh:
# a fresh 0700 copy, default settings, the demo fund, Ctrl-C, nothing left behind).
set -euo pipefail
cd "$(dirname "$0")/../.."
./ops/scripts/ensure-deps.sh
cargo build --workspace --all-targets
cargo test --workspace --all-targets -- --test-threads "${COVENANT_TEST_THREADS:-4}" --skip hostile::
# The hostile-input suite measures a probe's latency under load: alone, not beside the rest.
cargo test --workspace --test it -- hostile::
./ops/scripts/first-contact.sh
