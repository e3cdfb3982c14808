//! Covenant's integration tests: one binary, real nats-server and PostgreSQL processes
//! started per test by the harness (`covenant_ops::managed`), never the machine's own.

mod harness;

mod alerts_live;
mod api_auth;
mod api_http;
mod api_limits;
mod api_live;
mod audit_chain;
mod audit_trail;
mod bad_input;
mod chaos;
mod chaos_r3;
mod cli;
mod cluster;
mod concurrency;
mod cqrs_framework;
mod domain_purity;
mod first_contact;
mod group_commit;
mod hostile;
mod http_connections;
mod idempotency;
mod log_backpressure;
mod managed_postgres;
mod managed_takeover;
mod metrics_scrape;
mod nats_faults;
mod ops_kit;
mod personal_data;
mod projections_bad_events;
mod projections_exactly_once;
mod projections_gaps;
mod projections_instances;
mod projections_lag;
mod projections_rebuild;
mod projections_verify;
mod read_your_writes;
mod runbook;
mod sealer_lifetime;
mod snapshots;
mod web;
mod workload;
mod writes_without_postgres;
