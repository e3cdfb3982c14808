//! `covenant streams info`: the event stream's state, durability, configuration check and
//! consumers.

use anyhow::{Context, Result};

use crate::connect;
use crate::settings::Settings;

/// Prints the stream's state, durability, configuration check and consumers.
///
/// # Errors
/// When NATS cannot be reached or the stream does not exist.
pub async fn info(url: &str, s: &Settings) -> Result<()> {
    let client = connect::client(url).await?;
    let cfg = s.log_config();
    let js = async_nats::jetstream::new(client);
    // The lookups answer with the stream's and each consumer's state.
    let stream = js.get_stream(&cfg.stream).await.with_context(|| format!("stream {} not found", cfg.stream))?;
    let info = stream.cached_info().clone();
    let st = &info.state;
    println!("stream {}  subjects {:?}", info.config.name, info.config.subjects);
    println!(
        "  messages {}  bytes {}  first seq {}  last seq {}  subjects {}",
        st.messages, st.bytes, st.first_sequence, st.last_sequence, st.subjects_count
    );
    println!("  deleted messages (gaps) {}", st.deleted_count.unwrap_or(0));
    let sync = managed_sync(&s.data_dir, s.managed_nats_port, url);
    println!("  durability: replicas {}, sync {sync}", info.config.num_replicas);
    match cfg.group_commit {
        0 => println!("  group commit: off (COVENANT_GROUP_COMMIT)"),
        n => println!("  group commit: up to {n} atomic batches in flight per process (COVENANT_GROUP_COMMIT)"),
    }
    let problems = covenant_commands::config::check_stream_config(&info.config, &cfg);
    if problems.is_empty() {
        println!(
            "  configuration: OK (deny delete/purge, no rollup, no per-subject limit, retention {:?})",
            info.config.max_age
        );
    }
    for p in problems {
        println!("  configuration PROBLEM: {} = {}", p.setting, p.detail);
    }
    let mut names = stream.consumer_names();
    let mut any = false;
    use futures::StreamExt;
    while let Some(name) = names.next().await {
        let name = name?;
        let c: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&name).await.map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
        let ci = c.cached_info();
        println!(
            "  consumer {name}: pending {}  ack pending {}  redelivered {}  delivered seq {}",
            ci.num_pending, ci.num_ack_pending, ci.num_redelivered, ci.delivered.stream_sequence
        );
        any = true;
    }
    if !any {
        println!("  consumers: none");
    }
    Ok(())
}

/// The managed server's sync setting, read from its config file; external servers'
/// settings are not visible through the JetStream API.
fn managed_sync(data_dir: &std::path::Path, port: u16, url: &str) -> String {
    let managed = url.ends_with(&format!(":{port}"));
    match std::fs::read_to_string(data_dir.join("nats/covenant.conf")) {
        Ok(conf) if managed && conf.contains("sync_interval: always") => "always (fsync before every ack)".into(),
        Ok(_) if managed => "default (flush every 2 min; an OS crash can lose up to 2 min of acked events)".into(),
        _ => "set by the external server's config (not visible here); R3 makes an ack mean a quorum holds it".into(),
    }
}
