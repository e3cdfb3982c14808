#!/usr/bin/env bash
# Runs every test: installs missing binaries, builds once, runs all test targets from that
# build (each integration test starts its own nats-server and PostgreSQL on free ports),
# then the README's first command as a new user runs it (ops/scripts/first-contact.sh:
# a fresh 0700 copy, default settings, the demo fund, Ctrl-C, nothing left behind).
set -euo pipefail
cd "$(dirname "$0")/../.."
./ops/scripts/ensure-deps.sh
cargo build --workspace --all-targets
cargo test --workspace --all-targets -- --test-threads "${COVENANT_TEST_THREADS:-4}" \
  --skip hostile:: --skip chaos --skip api_auth::login_answers
# Tests that measure time run alone, not beside the rest: the hostile-input suite (a
# probe's latency under load) and the login timing comparison.
cargo test --workspace --test it -- --test-threads 1 hostile:: api_auth::login_answers
# The chaos suite (faults under load against real processes; each scenario about a minute),
# two at a time so its own load stays bounded.
cargo test --workspace --test it -- --test-threads 2 --nocapture chaos
./ops/scripts/first-contact.sh
