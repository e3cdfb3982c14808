//! Logs, traces and metrics, set up once in `main`.
//!
//! Logs and traces are the `covenant-telemetry` crate's (re-exported here: [`init`],
//! [`install`]); this module adds the metrics: the Prometheus recorder
//! ([`install_metrics`]) and the HELP text of every metric Covenant records.

pub use covenant_telemetry::{DEFAULT_FILTER, DiscardExporter, LogFormat, Telemetry, init, install, provider_with};

/// HELP texts (and units) of every metric Covenant records; `promtool check metrics` wants
/// one per family.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "http_server_request_duration_seconds",
        Unit::Seconds,
        "HTTP requests by method, matched route and status."
    );
    describe_histogram!("graphql_operation_duration_seconds", Unit::Seconds, "GraphQL operations by name and type.");
    describe_histogram!(
        "db_client_operation_duration_seconds",
        Unit::Seconds,
        "PostgreSQL operations (read-model queries, projection transactions)."
    );
    describe_counter!("covenant_commands_total", "Commands by aggregate, command and outcome.");
    describe_histogram!("covenant_command_duration_seconds", Unit::Seconds, "Command handling time, load to append.");
    describe_counter!("covenant_events_appended_total", "Events appended to the event stream.");
    describe_counter!(
        "covenant_leader_retries_total",
        "Publishes and leader reads retried while the stream had no leader (a failover) or the connection came back."
    );
    describe_histogram!("covenant_append_duration_seconds", Unit::Seconds, "JetStream append time (publish to ack).");
    describe_counter!(
        "covenant_group_commit_appends_total",
        "Appends stored as members of a group-commit batch (several commands, one atomic batch)."
    );
    describe_histogram!("covenant_group_commit_batch_appends", "Appends per group-commit batch.");
    describe_counter!(
        "covenant_group_commit_refused_total",
        "Group-commit batches the server refused as a whole, by reason; their appends went again one by one."
    );
    describe_gauge!("covenant_projection_lag_events", "Events in the stream not yet applied by a projection.");
    describe_gauge!(
        "covenant_projection_divergence",
        "Rows of a read model that differ from the fold of the log, as the last `covenant projections verify` found."
    );
    describe_gauge!(
        "covenant_projection_active",
        "1 where this instance holds the projection's lease and runs it, 0 where it stands by."
    );
    describe_counter!("covenant_projection_events_total", "Events applied by each projection.");
    describe_histogram!(
        "covenant_projection_batch_duration_seconds",
        Unit::Seconds,
        "Time to apply one projection batch."
    );
    describe_counter!(
        "covenant_projection_redeliveries_total",
        "Events delivered again and skipped by the checkpoint."
    );
    describe_counter!(
        "covenant_projection_skipped_events_total",
        "Events a projection could not apply (bad type or payload)."
    );
    describe_counter!(
        "covenant_projection_sequence_gaps_total",
        "Batches that stopped at a stream sequence that was not delivered (fetched again)."
    );
    describe_gauge!(
        "covenant_projection_gap_sequence",
        "The sequence a projection is held at because it was not delivered; 0 when none."
    );
    describe_counter!("covenant_http_panics_total", "Requests whose handler panicked (answered 500).");
    describe_counter!(
        "covenant_graphql_time_budget_exceeded_total",
        "Queries stopped at the 10 s time budget (answered UNAVAILABLE)."
    );
    describe_gauge!(
        "nats_consumer_pending_messages",
        "Messages a JetStream consumer has not acknowledged (undelivered plus awaiting ack)."
    );
    describe_gauge!("covenant_countries", "Registered countries.");
    describe_gauge!("covenant_projects", "Live (not deleted) projects.");
    describe_gauge!("covenant_users", "Registered users.");
    describe_gauge!("covenant_fund_usd", "The covenant fund: sum of every country's GDP, in USD.");
    describe_counter!("covenant_projects_created_total", "Projects created.");
}

/// Histogram buckets in seconds (explicit, so p95 can be aggregated with
/// `histogram_quantile`): 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Buckets of the group-commit batch size (appends per batch): 2 to the server's 1,000.
pub const BATCH_BUCKETS: [f64; 9] = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1000.0];

/// Installs the process-wide Prometheus recorder once and returns its handle (later calls
/// return the same handle). Its upkeep runs every 5 s on the current runtime when called
/// inside one. (Process, runtime and pool figures are rendered at scrape time by the API.)
pub fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("static, non-empty buckets")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("covenant_group_commit_batch_appends".into()),
                    &BATCH_BUCKETS,
                )
                .expect("static, non-empty buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let h = handle.clone();
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        h.run_upkeep();
                    }
                });
            }
            handle
        })
        .clone()
}
