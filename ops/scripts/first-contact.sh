#!/usr/bin/env bash
# The README's first command, run as a new user runs it: a fresh copy of this checkout in a
# directory only its owner may enter (mode 0700, like root's home), default settings (the
# relative data dir ./.covenant, the default ports), then:
#   1. wait for /api/healthcheck,
#   2. query the demo fund until the 142 demo countries are in it,
#   3. Ctrl-C (SIGINT to the whole process group, as a terminal sends it),
#   4. check that nothing is left behind: no process of the copy, no listener on its ports.
# Exits non-zero, with the demo's output, at the first step that fails.
#
# The copy builds into this checkout's target directory (CARGO_TARGET_DIR), so a run costs
# a rebuild of the workspace's own crates, not of every dependency.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
say() { printf '[first-contact] %s\n' "$*" >&2; }

home="$(mktemp -d /tmp/covenant-first-contact.XXXXXX)" # mktemp makes it mode 0700
chmod 700 "$home"
clone="$home/covenant"
log="$home/demo.log"
pgid=""
cleanup() {
  local rc=$?
  if [ -n "$pgid" ] && kill -0 -- "-$pgid" 2>/dev/null; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  if [ "$rc" != 0 ] && [ -f "$log" ]; then
    say "the demo's output:"
    sed 's/^/    /' "$log" >&2 || true
  fi
  # The managed PostgreSQL may live outside the copy (see ops/src/managed/postgres.rs).
  local pg
  pg="$(readlink "$clone/.covenant/postgres" 2>/dev/null || true)"
  [ -n "$pg" ] && case "$pg" in /var/lib/covenant/*) rm -rf "$pg" ;; esac
  rm -rf "$home"
}
trap cleanup EXIT

# A fresh clone holds the committed tree; a copy of the tracked and new files also carries
# uncommitted work, which is what a developer means to test.
say "copying the checkout to $clone"
mkdir -p "$clone"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf -) | tar -xf - -C "$clone"

for port in 4000 14222 15432; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is already in use on this machine: the demo's default ports must be free for this check"
    exit 1
  fi
done

say "starting ./ops/scripts/demo.sh (default settings)"
cd "$clone"
CARGO_TARGET_DIR="$src/target" setsid ./ops/scripts/demo.sh >"$log" 2>&1 &
pgid=$!

# HTTP through Python's standard library (a fresh machine may have no curl): prints the
# body of a 2xx answer, fails otherwise.
fetch() {
  python3 - "$@" <<'PY'
import sys, urllib.request
url, body = sys.argv[1], (sys.argv[2].encode() if len(sys.argv) > 2 else None)
req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=5).read().decode())
except Exception as e:
    sys.exit(f"{url}: {e}")
PY
}

deadline=$((SECONDS + ${FIRST_CONTACT_TIMEOUT:-600}))
until fetch http://127.0.0.1:4000/api/healthcheck >/dev/null 2>&1; do
  kill -0 "$pgid" 2>/dev/null || { say "the demo exited before it was healthy"; exit 1; }
  [ $SECONDS -lt $deadline ] || { say "not healthy in time"; exit 1; }
  sleep 1
done
say "healthy after ${SECONDS}s"

query='{"query":"{ covenantFund { countries totalUsd } }"}'
until body="$(fetch http://127.0.0.1:4000/api/graphql "$query" 2>&1)" &&
  [ "$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["covenantFund"]["countries"])')" = 142 ]; do
  [ $SECONDS -lt $deadline ] || { say "the demo fund never reached 142 countries: ${body:-no answer}"; exit 1; }
  sleep 1
done
say "demo fund: $body"
grep -q "demo admin" "$log" || { say "the demo printed no admin login"; exit 1; }

say "Ctrl-C"
kill -INT -- "-$pgid"
for _ in $(seq 60); do
  kill -0 -- "-$pgid" 2>/dev/null || break
  sleep 1
done
if kill -0 -- "-$pgid" 2>/dev/null; then
  say "processes still running 60 s after Ctrl-C:"
  ps -o pid,args -g "$pgid" >&2 || true
  exit 1
fi
pg_dir="$(readlink "$clone/.covenant/postgres" 2>/dev/null || echo "$clone/.covenant/postgres")"
sleep 1
left="$(pgrep -af -- "$clone|$pg_dir" | grep -v -e pgrep -e first-contact || true)"
if [ -n "$left" ]; then
  say "left behind after Ctrl-C:"
  printf '%s\n' "$left" >&2
  exit 1
fi
for port in 4000 14222 15432; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port still answers after Ctrl-C"
    exit 1
  fi
done
grep -q "^stopping" "$log" || { say "the demo did not say it was stopping"; exit 1; }
say "OK: demo healthy, fund of 142 countries, clean stop after Ctrl-C, nothing left behind"
