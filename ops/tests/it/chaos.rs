//! The chaos suite: faults under a write load sent through the GraphQL API of real
//! `covenant serve` processes, each scenario bounded to about a minute. Every scenario
//! checks the same things at the end:
//!
//! - **nothing acknowledged is lost**: every `updateGdp` answered with a `sequence` is in
//!   the stream at that sequence, on that country's subject, with that figure;
//! - **linear chains**: each subject's versions are 1, 2, 3, … in stream order;
//! - **exact read models**: `covenant projections verify` exits 0 (every read model is the
//!   fold of the log);
//! - **bounded consumers**: the event stream never holds more than the two projection
//!   durables plus two per instance (its users-and-keys follower, and a replacement while
//!   an old one expires) plus one per instance SIGKILLed in the scenario (its follower
//!   expires 30 s after the kill);
//!
//! and prints its recovery time. (The R3 leader-kill scenario is `chaos_r3`.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use covenant_commands::{CommandContext, CommandSide, LogConfig};
use covenant_domain::CountryCommand;
use covenant_ops::managed::nats::{NatsServer, SyncPolicy};
use covenant_ops::managed::postgres::PgCluster;
use covenant_projections::checkpoint::{PROJECTIONS, wait_for_sequence};

use crate::harness::{all_events, log_config, pg};

mod instance;
use instance::*;

/// Countries the writers update.
const AGGREGATES: usize = 20;
/// Concurrent writers.
const WRITERS: usize = 4;

/// One acknowledged write: the answer's sequence, the country and the figure.
#[derive(Debug, Clone)]
struct Ack {
    seq: u64,
    code: String,
    gdp: u64,
    at: Instant,
}

/// The stack under test and the load on it.
struct Rig {
    name: &'static str,
    nats_url: String,
    db_url: String,
    cfg: LogConfig,
    side: Arc<CommandSide>,
    pool: sqlx::PgPool,
    codes: Vec<String>,
    instances: Vec<Instance>,
    token: String,
    acks: Arc<Mutex<Vec<Ack>>>,
    errors: Arc<Mutex<BTreeMap<String, u64>>>,
    /// The most consumers the event stream held at any sample.
    max_consumers: Arc<AtomicU64>,
    /// Instances SIGKILLed so far.
    kills: u64,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(
        name: &'static str,
        nats_url: String,
        pg: &PgCluster,
        pool: sqlx::PgPool,
        cfg: LogConfig,
        n: usize,
    ) -> Self {
        let side = Arc::new(crate::harness::side(&nats_url, &cfg).await);
        let demo = covenant_ops::seed::demo_countries().expect("demo data");
        let mut codes = Vec::new();
        for c in demo.iter().take(AGGREGATES) {
            let cmd = CountryCommand::Register { code: c.code.clone(), name: c.name.clone(), gdp_usd: c.gdp[0].1 };
            side.countries.execute(c.code.as_str(), cmd, &CommandContext::system()).await.expect("register");
            codes.push(c.code.to_string());
        }
        let password = "correct horse battery";
        covenant_ops::users::create(&side, &pool, "steward@chaos.test", covenant_domain::Role::Steward, password)
            .await
            .expect("steward");
        let dir = tempfile::Builder::new().prefix("covenant-chaos-").tempdir().expect("dir");
        let db_url = pg.url("covenant");
        let mut instances: Vec<Instance> =
            (0..n).map(|i| Instance::new(&nats_url, &db_url, &cfg, dir.path(), i)).collect();
        for i in &mut instances {
            i.start().await;
        }
        let login = format!(r#"mutation {{ login(email: "steward@chaos.test", password: "{password}") {{ token }} }}"#);
        let (_, body) = graphql(instances[0].addr, None, &login).await.expect("login");
        let token = body["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("login: {body}")).to_owned();
        Self {
            name,
            nats_url,
            db_url,
            cfg,
            side,
            pool,
            codes,
            instances,
            token,
            acks: Arc::default(),
            errors: Arc::default(),
            max_consumers: Arc::default(),
            kills: 0,
            stop: Arc::default(),
            writers: Vec::new(),
            _dir: dir,
        }
    }

    /// Starts the writers (each update names a figure no other write uses) and a sampler of
    /// the stream's consumer count.
    fn load(&mut self) {
        let next = Arc::new(AtomicU64::new(0));
        let addrs: Vec<SocketAddr> = self.instances.iter().map(|i| i.addr).collect();
        for _ in 0..WRITERS {
            let (next, acks, errors, stop, codes, token, addrs) = (
                next.clone(),
                self.acks.clone(),
                self.errors.clone(),
                self.stop.clone(),
                self.codes.clone(),
                self.token.clone(),
                addrs.clone(),
            );
            self.writers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let code = &codes[n as usize % codes.len()];
                    let gdp = 1_000_000_000 + n;
                    let addr = addrs[n as usize % addrs.len()];
                    let q = format!(r#"mutation {{ updateGdp(code: "{code}", gdpUsd: "{gdp}") {{ sequence }} }}"#);
                    let kind = match graphql(addr, Some(&token), &q).await {
                        Ok((200, body)) if body["data"]["updateGdp"]["sequence"].is_string() => {
                            let seq = body["data"]["updateGdp"]["sequence"].as_str().and_then(|s| s.parse().ok());
                            let seq = seq.unwrap_or_else(|| panic!("a sequence: {body}"));
                            acks.lock().expect("lock").push(Ack { seq, code: code.clone(), gdp, at: Instant::now() });
                            continue;
                        }
                        Ok((status, body)) => {
                            format!("{status} {}", body["errors"][0]["extensions"]["code"].as_str().unwrap_or("?"))
                        }
                        Err(e) if e.contains("ConnectionRefused") || e.contains("refused") => {
                            "connection refused".into()
                        }
                        Err(e) => format!("transport: {}", e.chars().take(60).collect::<String>()),
                    };
                    *errors.lock().expect("lock").entry(kind).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }));
        }
        let (js, stream, stop, max) =
            (self.side.log.jetstream().clone(), self.cfg.stream.clone(), self.stop.clone(), self.max_consumers.clone());
        self.writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let count = async { Some(js.get_stream(&stream).await.ok()?.info().await.ok()?.state.consumer_count) };
                if let Ok(Some(c)) = tokio::time::timeout(Duration::from_secs(1), count).await {
                    max.fetch_max(c as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }

    fn acked(&self) -> usize {
        self.acks.lock().expect("lock").len()
    }

    /// The first write acknowledged after `t`, as time since `t`.
    async fn first_ack_after(&self, t: Instant, within: Duration) -> Duration {
        let found =
            crate::harness::eventually(within, async || self.acks.lock().expect("lock").iter().any(|a| a.at > t)).await;
        assert!(found, "{}: no write acknowledged within {within:?}", self.name);
        let first = self.acks.lock().expect("lock").iter().filter(|a| a.at > t).map(|a| a.at).min().expect("an ack");
        first.duration_since(t)
    }

    async fn stop_load(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers.drain(..) {
            w.await.expect("writer");
        }
    }

    /// The checks every scenario ends with; prints the scenario's figures.
    async fn check(mut self, recovery: &str) {
        self.stop_load().await;
        let acks = self.acks.lock().expect("lock").clone();
        assert!(!acks.is_empty(), "{}: nothing was acknowledged", self.name);
        let events = all_events(&self.side.log).await;
        let by_seq: BTreeMap<u64, &covenant_commands::StoredEvent> = events.iter().map(|e| (e.seq, e)).collect();
        for a in &acks {
            let e = by_seq.get(&a.seq).unwrap_or_else(|| panic!("{}: acknowledged sequence {} lost", self.name, a.seq));
            assert_eq!(e.subject, self.side.log.subject("country", &a.code), "{}: sequence {}", self.name, a.seq);
            assert_eq!(e.event_type, "country.update", "{}: sequence {}", self.name, a.seq);
            let p: serde_json::Value = serde_json::from_slice(&e.payload).expect("payload");
            assert_eq!(
                p["new_gdp_usd"].as_str(),
                Some(a.gdp.to_string().as_str()),
                "{}: sequence {}",
                self.name,
                a.seq
            );
        }
        // No figure stored twice: each write names its own.
        let mut figures = std::collections::HashSet::new();
        for e in events.iter().filter(|e| e.event_type == "country.update") {
            let p: serde_json::Value = serde_json::from_slice(&e.payload).expect("payload");
            let fig = p["new_gdp_usd"].as_str().unwrap_or_default().to_owned();
            assert!(figures.insert(fig.clone()), "{}: figure {fig} stored twice (at {})", self.name, e.seq);
        }
        let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &events {
            let v = versions.entry(e.subject.as_str()).or_default();
            assert_eq!(e.version, *v + 1, "{}: {} at sequence {}", self.name, e.subject, e.seq);
            *v = e.version;
        }
        let last = events.last().map_or(0, |e| e.seq);
        let caught_up = wait_for_sequence(&self.pool, &PROJECTIONS, last, Duration::from_secs(90)).await;
        let logs: String = self.instances.iter().map(Instance::log_text).collect();
        caught_up.unwrap_or_else(|e| panic!("{}: projections did not catch up: {e}\n{logs}", self.name));
        let (code, out) =
            crate::harness::covenant_cli(&["projections", "verify"], &self.nats_url, &self.db_url, &self.cfg);
        assert_eq!(code, Some(0), "{}: projections verify: {out}", self.name);
        let bound = 2 + 2 * self.instances.len() as u64 + self.kills;
        let max = self.max_consumers.load(Ordering::Relaxed);
        assert!(max <= bound, "{}: {max} consumers on the event stream (bound {bound})", self.name);
        println!(
            "chaos {}: {} writes acknowledged, none lost (by sequence, subject and figure), {} events in linear \
             chains; projections verify: equal; at most {max} consumers (bound {bound}); errors answered {:?}; {recovery}",
            self.name,
            acks.len(),
            events.len(),
            self.errors.lock().expect("lock"),
        );
        for i in &mut self.instances {
            i.kill();
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_nats_sigkill_with_sync_always() {
    let mut nats = NatsServer::start_temp(SyncPolicy::Always).await.expect("nats");
    let (cluster, pool) = pg().await;
    let mut rig = Rig::new("nats-sigkill", nats.url(), &cluster, pool, log_config(), 1).await;
    rig.load();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = rig.acked();
    assert!(before > 20, "writes flowed before the kill ({before})");
    nats.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.start().await.expect("restart nats-server on its store");
    let restarted = Instant::now();
    let recovered = rig.first_ack_after(restarted, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    rig.check(&format!("writes acknowledged again {} after nats-server restarted", secs(recovered))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_postgres_stopped_for_20_s_while_writes_continue() {
    let nats = crate::harness::nats().await;
    let (mut cluster, pool) = pg().await;
    let mut rig = Rig::new("postgres-20s", nats.url(), &cluster, pool.clone(), log_config(), 1).await;
    rig.load();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.stop(true);
    let down = Instant::now();
    let (errors_before, acked_before) = (rig.errors.lock().expect("lock").values().sum::<u64>(), rig.acked());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = rig.acked() - acked_before;
    let failed = rig.errors.lock().expect("lock").values().sum::<u64>() - errors_before;
    cluster.start().await.expect("restart postgres");
    let up = Instant::now();
    let tip = rig.side.log.last_sequence().await.expect("last");
    wait_for_sequence(&pool, &PROJECTIONS, tip, Duration::from_secs(60)).await.expect("caught up");
    let caught_up = up.elapsed();
    assert!(during > 50, "writes continued while PostgreSQL was down ({during} in {:?})", down.elapsed());
    assert_eq!(failed, 0, "no write was reported failed while PostgreSQL was down: {:?}", rig.errors.lock());
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.check(&format!(
        "{during} writes acknowledged during the 20 s outage, none failed; read models caught up {} after \
         PostgreSQL restarted",
        secs(caught_up)
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_three_service_sigkills() {
    let nats = crate::harness::nats().await;
    let (cluster, pool) = pg().await;
    let mut rig = Rig::new("service-sigkill", nats.url(), &cluster, pool, log_config(), 1).await;
    rig.load();
    let mut recoveries = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed = Instant::now();
        rig.instances[0].kill();
        rig.kills += 1;
        rig.instances[0].start().await;
        let healthy = Instant::now();
        let first = rig.first_ack_after(healthy, Duration::from_secs(30)).await;
        recoveries.push(secs(healthy.duration_since(killed) + first));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.check(&format!(
        "writes acknowledged again after each SIGKILL (restart to healthy, then the first write): {recoveries:?}"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_two_instances_on_the_same_twenty_aggregates() {
    let nats = crate::harness::nats().await;
    let (cluster, pool) = pg().await;
    let mut rig = Rig::new("two-instances", nats.url(), &cluster, pool.clone(), log_config(), 2).await;
    rig.load();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The instance holding the projection leases dies; the other takes them over.
    let js = rig.side.log.jetstream().clone();
    let holder = lease_holder(&js, &rig.cfg.stream).await;
    let victim = rig
        .instances
        .iter()
        .position(|i| i.child.as_ref().is_some_and(|c| holder.starts_with(&format!("{}-", c.id()))))
        .unwrap_or(0);
    let killed = Instant::now();
    let at_kill = covenant_projections::checkpoint::get(&pool, "ledger").await.expect("checkpoint");
    rig.instances[victim].kill();
    rig.kills += 1;
    // Writers sent to the dead instance get "connection refused"; the survivor keeps writing
    // and, once the lease expires, runs the projections.
    let resumed = crate::harness::eventually(Duration::from_secs(30), async || {
        covenant_projections::checkpoint::get(&pool, "ledger").await.unwrap_or(0) > at_kill + 10
    })
    .await;
    assert!(resumed, "the survivor took over the projections");
    let takeover = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.check(&format!(
        "the surviving instance ran the projections again {} after the holder's SIGKILL (lease 2 s)",
        secs(takeover)
    ))
    .await;
}

/// The holder of the ledger projection's lease (`<pid>-<uuid>`).
async fn lease_holder(js: &async_nats::jetstream::Context, stream: &str) -> String {
    let kv = js.get_key_value(format!("{stream}_LEASES")).await.expect("lease bucket");
    let entry = kv.get("projection.ledger").await.expect("read lease").expect("a lease");
    let v: serde_json::Value = serde_json::from_slice(&entry).expect("lease");
    v["holder"].as_str().unwrap_or_default().to_owned()
}
