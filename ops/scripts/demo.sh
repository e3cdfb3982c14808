#!/usr/bin/env bash
# Installs what is missing, builds Covenant and starts it with demo data under ./.covenant
# (a managed nats-server on 127.0.0.1:14222 and PostgreSQL on 127.0.0.1:15432).
# Extra arguments go to `covenant serve`, e.g. `./ops/scripts/demo.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/../.."
COVENANT_SKIP_WEB_DEPS=1 ./ops/scripts/ensure-deps.sh
exec cargo run --quiet -p covenant-ops --bin covenant -- serve --demo "$@"
