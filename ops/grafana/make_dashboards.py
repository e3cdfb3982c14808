#!/usr/bin/env python3
"""Writes Covenant's Grafana dashboards (dashboards/*.json) from the panel lists below.

Run it after changing a panel: `python3 ops/grafana/make_dashboards.py`. The PromQL of every
panel is checked by the tests (it parses with promtool and names only series that a real
scrape of Covenant contains).
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "prometheus"}


def panel(pid, title, exprs, unit="short", kind="timeseries", x=0, y=0, w=12, h=8, legend=None):
    targets = [
        {"datasource": DS, "expr": e, "refId": chr(65 + i), "legendFormat": (legend or [None] * len(exprs))[i] or "__auto"}
        for i, e in enumerate(exprs)
    ]
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
    return p


def grid(specs):
    out = []
    for i, s in enumerate(specs):
        kind = s.get("kind", "timeseries")
        w = s.get("w", 6 if kind == "stat" else 12)
        out.append(s | {"pid": i + 1, "w": w})
    x = y = 0
    panels = []
    for s in out:
        if x + s["w"] > 24:
            x, y = 0, y + 8
        panels.append(panel(s["pid"], s["title"], s["exprs"], s.get("unit", "short"), s.get("kind", "timeseries"), x, y, s["w"], 8, s.get("legend")))
        x += s["w"]
    return panels


def dashboard(uid, title, specs, tags):
    return {
        "uid": uid,
        "title": title,
        "tags": ["covenant"] + tags,
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": grid(specs),
    }


J = 'job="covenant"'
DASHBOARDS = {
    "covenant-overview": dashboard("covenant-overview", "Covenant overview", [
        {"title": "Countries", "kind": "stat", "exprs": [f"covenant_countries{{{J}}}"]},
        {"title": "Live projects", "kind": "stat", "exprs": [f"covenant_projects{{{J}}}"]},
        {"title": "Users", "kind": "stat", "exprs": [f"covenant_users{{{J}}}"]},
        {"title": "Covenant fund", "kind": "stat", "unit": "currencyUSD", "exprs": [f"covenant_fund_usd{{{J}}}"]},
        {"title": "Covenant fund over time", "unit": "currencyUSD", "exprs": [f"covenant_fund_usd{{{J}}}"]},
        {"title": "Project creation rate", "unit": "ops", "exprs": [f"rate(covenant_projects_created_total{{{J}}}[5m])"]},
        {"title": "Commands by outcome", "unit": "ops", "exprs": [f"sum by (aggregate, outcome) (rate(covenant_commands_total{{{J}}}[5m]))"]},
        {"title": "Events appended", "unit": "ops", "exprs": [f"rate(covenant_events_appended_total{{{J}}}[5m])"]},
        {"title": "Audit: unsealed events", "exprs": [f"covenant_audit_unsealed_events{{{J}}}"]},
        {"title": "Audit: seconds since the last checkpoint", "unit": "s", "exprs": [f"time() - covenant_audit_checkpoint_timestamp_seconds{{{J}}}"]},
    ], ["business"]),
    "covenant-api": dashboard("covenant-api", "Covenant API", [
        {"title": "Requests by route", "unit": "reqps", "exprs": [f"sum by (route) (rate(http_server_request_duration_seconds_count{{{J}}}[5m]))"]},
        {"title": "Latency p50 / p95 / p99", "unit": "s", "legend": ["p50", "p95", "p99"], "exprs": [
            f"histogram_quantile({q}, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{J}}}[5m])))" for q in ("0.5", "0.95", "0.99")]},
        {"title": "Responses by status class", "unit": "reqps", "exprs": [
            f'sum by (class) (label_replace(rate(http_server_request_duration_seconds_count{{{J}}}[5m]), "class", "${{1}}xx", "status", "([0-9]).."))']},
        {"title": "5xx error rate", "unit": "percentunit", "exprs": [
            f'sum(rate(http_server_request_duration_seconds_count{{{J},status=~"5.."}}[5m])) / sum(rate(http_server_request_duration_seconds_count{{{J}}}[5m]))']},
        {"title": "GraphQL p95 by operation", "unit": "s", "exprs": [
            f"histogram_quantile(0.95, sum by (le, operation, type) (rate(graphql_operation_duration_seconds_bucket{{{J}}}[5m])))"]},
        {"title": "Command p95", "unit": "s", "exprs": [
            f"histogram_quantile(0.95, sum by (le) (rate(covenant_command_duration_seconds_bucket{{{J}}}[5m])))"]},
        {"title": "HTTP connections open / bound", "legend": ["open", "bound"], "exprs": [
            f"http_server_open_connections{{{J}}}", f"http_server_connection_limit{{{J}}}"]},
        {"title": "Connections closed by the header timeout / refused for their address", "unit": "ops",
         "legend": ["header timeout", "address at its bound"], "exprs": [
            f"rate(http_server_connections_timed_out_total{{{J}}}[5m])",
            f"rate(http_server_connections_refused_total{{{J}}}[5m])"]},
    ], ["api"]),
    "covenant-database": dashboard("covenant-database", "Covenant database", [
        {"title": "Operation p95 by operation", "unit": "s", "exprs": [
            f"histogram_quantile(0.95, sum by (le, operation) (rate(db_client_operation_duration_seconds_bucket{{{J}}}[5m])))"]},
        {"title": "Operations per second", "unit": "ops", "exprs": [f"sum by (operation) (rate(db_client_operation_duration_seconds_count{{{J}}}[5m]))"]},
        {"title": "Pool connections", "exprs": [f"db_client_connections{{{J}}}", f"db_client_connection_max{{{J}}}"]},
        {"title": "Projection batch p95", "unit": "s", "exprs": [
            f"histogram_quantile(0.95, sum by (le, projection) (rate(covenant_projection_batch_duration_seconds_bucket{{{J}}}[5m])))"]},
    ], ["database"]),
    "covenant-runtime": dashboard("covenant-runtime", "Covenant runtime", [
        {"title": "Resident memory", "unit": "bytes", "exprs": [f"process_resident_memory_bytes{{{J}}}"]},
        {"title": "CPU", "unit": "percentunit", "exprs": [f"rate(process_cpu_seconds_total{{{J}}}[5m])"]},
        {"title": "Open file descriptors", "exprs": [f"process_open_fds{{{J}}}", f"process_max_fds{{{J}}}"]},
        {"title": "Threads", "exprs": [f"process_threads{{{J}}}"]},
        {"title": "Tokio tasks alive (runaway concurrency)", "exprs": [f"tokio_alive_tasks{{{J}}}"]},
        {"title": "Tokio busy share", "unit": "percentunit", "exprs": [f"rate(tokio_busy_seconds_total{{{J}}}[5m]) / tokio_workers{{{J}}}"]},
        {"title": "Tokio global queue depth", "exprs": [f"tokio_global_queue_depth{{{J}}}"]},
        {"title": "Log lines dropped (stderr not read)", "unit": "ops", "exprs": [f"rate(covenant_log_lines_dropped_total{{{J}}}[5m])"]},
    ], ["runtime"]),
    "covenant-nats": dashboard("covenant-nats", "Covenant NATS streams", [
        {"title": "Projection lag (events)", "exprs": [f"covenant_projection_lag_events{{{J}}}"]},
        {"title": "Consumer pending", "exprs": [f"nats_consumer_pending_messages{{{J}}}"]},
        {"title": "Events applied per projection", "unit": "ops", "exprs": [f"sum by (projection) (rate(covenant_projection_events_total{{{J}}}[5m]))"]},
        {"title": "Redeliveries", "unit": "ops", "exprs": [f"sum by (projection) (rate(covenant_projection_redeliveries_total{{{J}}}[5m]))"]},
        {"title": "Append throughput", "unit": "ops", "exprs": [f"rate(covenant_events_appended_total{{{J}}}[5m])"]},
        {"title": "Append p95", "unit": "s", "exprs": [f"histogram_quantile(0.95, sum by (le) (rate(covenant_append_duration_seconds_bucket{{{J}}}[5m])))"]},
        {"title": "NATS connected", "kind": "stat", "exprs": [f"covenant_nats_connected{{{J}}}"]},
    ], ["nats"]),
}

if __name__ == "__main__":
    out = pathlib.Path(__file__).parent / "dashboards"
    out.mkdir(exist_ok=True)
    for name, d in DASHBOARDS.items():
        (out / f"{name}.json").write_text(json.dumps(d, indent=2) + "\n")
        print(f"wrote {out / (name + '.json')}")
