#!/usr/bin/env bash
# Checks the Alertmanager configuration and its routing with amtool (Debian's
# prometheus-alertmanager): every severity reaches the receiver the seed's table names.
set -euo pipefail
cd "$(dirname "$0")"
amtool check-config alertmanager.yml
expect() {
  local want="$1"; shift
  local got
  got="$(amtool config routes test --config.file=alertmanager.yml "$@")"
  if [ "$got" != "$want" ]; then
    echo "route test failed for $*: got '$got', want '$want'" >&2
    exit 1
  fi
  echo "ok: $* -> $got"
}
expect pager-and-on-call alertname=HighErrorRate severity=critical
expect pager-and-on-call alertname=NATSUnreachable severity=critical
expect on-call-and-email alertname=CovenantFundDrop severity=high
expect on-call-and-email alertname=NATSStreamLag severity=high
expect on-call-and-email alertname=SlowDatabaseQueries severity=high
expect alerts-channel alertname=HighMemoryUsage severity=medium
expect alerts-channel alertname=SlowGraphQLQueries severity=low
expect alerts-channel alertname=MetricsEndpointDown severity=low
expect alerts-channel alertname=Unlabelled
# Every alert of the rules file routes by its own severity.
grep -E '^\s+severity:' ../prometheus/alerts.yml | awk '{print $2}' | sort -u | while read -r sev; do
  case "$sev" in
    critical) want=pager-and-on-call ;;
    high) want=on-call-and-email ;;
    medium|low) want=alerts-channel ;;
    *) echo "alerts.yml uses severity '$sev', which routing does not know" >&2; exit 1 ;;
  esac
  expect "$want" alertname=FromRules severity="$sev"
done
