//! `covenant audit …`: seal, verify, export, prove, keys.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use covenant_audit::hash_to_b64;
use covenant_audit::note::{Checkpoint, NoteVerifier, SignedNote};
use covenant_audit::proof::{ProofFile, consistency_proof, inclusion_proof};
use covenant_audit::verify::{KeyRegistry, Report};

use super::keys::{self, SealerKey};
use super::sealer::{self, Sealed, Sealer};
use super::{AuditPaths, export, source};
use crate::connect;
use crate::settings::Settings;

mod prove;
mod verify;
use prove::{check_proof, sealed_leaves};
use verify::{progress_bar, verify};

/// `covenant audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Runs the sealer: every interval, when the log grew, appends a signed checkpoint of
    /// the whole stream to the checkpoint stream. One sealer is active at a time (a lease);
    /// start several for failover. Signs with COVENANT_SEALER_KEY (NAME:BASE64SEED) or the
    /// key file, which is created (and registered) on first use.
    Seal {
        /// Seconds between rounds.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// One round, then exit.
        #[arg(long)]
        once: bool,
        /// Stop (releasing the lease) once process PID is no longer this sealer's parent:
        /// the demo's sealer ends with the `covenant serve` that started it, even when that
        /// one is killed outright.
        #[arg(long, value_name = "PID")]
        parent: Option<u32>,
    },
    /// Verifies the live stream (or a bundle with --bundle, offline): config, gaps,
    /// hashes, chains, event ids, checkpoints and signatures. Exit 0 pass, 1 tampered,
    /// 2 warnings only, 3 usage or configuration error.
    Verify {
        /// Verify an exported bundle instead of the stream (no NATS needed).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// A checkpoint you saved earlier (signed note file): detects rollback and forks.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Hashing threads (0 = every core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Writes the stream, its checkpoints and the key registry as a bundle in DIR.
    Export {
        /// A new (or empty) directory.
        dir: PathBuf,
        /// Leave out the payloads of this event type (repeatable); the bundle still
        /// verifies, with the payload's hash in place of the payload.
        #[arg(long)]
        redact: Vec<String>,
    },
    /// Prints an RFC 9162 inclusion proof of the event at SEQ against the latest checkpoint.
    Prove {
        /// Stream sequence.
        seq: u64,
    },
    /// Prints an RFC 9162 consistency proof from tree size OLD_SIZE to the latest checkpoint.
    Consistency {
        /// The earlier tree size (that of a checkpoint you hold).
        old_size: u64,
    },
    /// Checks a proof printed by `prove` or `consistency` (offline), and its checkpoint's
    /// signature against the key registry.
    CheckProof {
        /// The proof (JSON); `-` for standard input.
        file: PathBuf,
    },
    /// The sealer key registry.
    Keys {
        /// What to do (default: list).
        #[command(subcommand)]
        what: Option<KeysCmd>,
    },
    /// The latest checkpoint and the unsealed tail.
    Status,
}

/// `covenant audit keys` subcommands (none: list).
#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// Lists the registered keys.
    List,
    /// Creates the sealer key file and registers its public key.
    Init {
        /// Key name on signature lines.
        #[arg(long, default_value = "covenant-sealer-1")]
        name: String,
        /// Also print the key as a COVENANT_SEALER_KEY value (a secret: handle with care).
        #[arg(long)]
        print: bool,
    },
    /// Rotates the sealer key: a handover checkpoint signed by the old and the new key,
    /// then the new key replaces the old in the key file and the registry. Stop the
    /// running sealer first (or let this wait for its lease).
    Rotate {
        /// Name of the new key (default: the old name with its number increased).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Runs an audit command; returns the process exit code.
///
/// # Errors
/// Usage and connection errors (the caller exits 3 for `verify`).
pub async fn run(s: &Settings, paths: &AuditPaths, cmd: AuditCmd) -> Result<u8> {
    let registry_path = paths.registry(&s.data_dir);
    let key_path = paths.key_file(&s.data_dir);
    match cmd {
        AuditCmd::Verify { bundle, trusted_checkpoint, json, threads } => {
            let explicit = paths.registry.is_some().then(|| registry_path.clone());
            let outcome = verify(s, &registry_path, explicit, bundle, trusted_checkpoint, json, threads).await;
            match outcome {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Ok(3)
                }
            }
        }
        AuditCmd::CheckProof { file } => check_proof(&registry_path, &file),
        AuditCmd::Keys { what: None | Some(KeysCmd::List) } => {
            let reg = keys::load_registry(&registry_path)?;
            println!("key registry {} (log {})", registry_path.display(), or_dash(&reg.origin));
            if reg.keys.is_empty() {
                println!("  no keys: run `covenant audit keys init` (or `covenant audit seal`, which creates one)");
            }
            for k in &reg.keys {
                println!("  {:<8} {}", k.status, k.vkey);
            }
            Ok(0)
        }
        AuditCmd::Keys { what: Some(KeysCmd::Init { name, print }) } => {
            if key_path.exists() {
                bail!("{} already exists: use `covenant audit keys rotate` to replace it", key_path.display());
            }
            let key = SealerKey::generate(&name)?;
            key.save(&key_path)?;
            keys::register(&registry_path, &source::origin(&s.stream), &key)?;
            println!("sealer key {name} written to {} (mode 0600)", key_path.display());
            println!("public key registered in {}: {}", registry_path.display(), key.vkey()?);
            if print {
                println!("COVENANT_SEALER_KEY={}", key.to_env_value());
            }
            Ok(0)
        }
        other => {
            let nats = connect::nats(s).await?;
            let js = async_nats::jetstream::new(connect::client(&nats.url).await?);
            live(s, &js, &registry_path, &key_path, other).await
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

async fn live(
    s: &Settings,
    js: &async_nats::jetstream::Context,
    registry_path: &std::path::Path,
    key_path: &std::path::Path,
    cmd: AuditCmd,
) -> Result<u8> {
    match cmd {
        AuditCmd::Seal { interval, once, parent } => {
            let key = sealer_key(s, registry_path, key_path)?;
            let interval = Duration::from_secs(interval.max(1));
            let mut sealer = Sealer::open(js, &s.stream, s.stream_replicas, key, interval).await?;
            seal_loop(&mut sealer, interval, once, key_path, parent).await
        }
        AuditCmd::Export { dir, redact } => {
            let registry = keys::load_registry(registry_path)?;
            let bar = progress_bar("exporting");
            let done = export::export(js, &s.stream, &registry, &dir, &redact, |n, total| {
                bar.set_length(total);
                bar.set_position(n);
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "exported {} events ({} redacted) and {} checkpoints to {}; verify with `covenant audit verify --bundle {}`",
                done.events,
                done.redacted,
                done.checkpoints,
                dir.display(),
                dir.display()
            );
            Ok(0)
        }
        AuditCmd::Prove { seq } => {
            let (note, size, leaves) = sealed_leaves(js, &s.stream).await?;
            if seq == 0 || seq > size {
                bail!("sequence {seq} is not sealed: the latest checkpoint covers 1..={size}");
            }
            let proof = inclusion_proof(seq - 1, &leaves).map_err(|e| anyhow::anyhow!("{e}"))?;
            let file = ProofFile::Inclusion {
                sequence: seq,
                leaf: hash_to_b64(&leaves[(seq - 1) as usize]),
                proof: proof.iter().map(hash_to_b64).collect(),
                checkpoint: note,
            };
            println!("{}", serde_json::to_string_pretty(&file)?);
            Ok(0)
        }
        AuditCmd::Consistency { old_size } => {
            let (note, size, leaves) = sealed_leaves(js, &s.stream).await?;
            if old_size > size {
                bail!("size {old_size} is beyond the latest checkpoint ({size})");
            }
            let proof = consistency_proof(old_size, &leaves).map_err(|e| anyhow::anyhow!("{e}"))?;
            let file = ProofFile::Consistency {
                old_size,
                old_root: hash_to_b64(&covenant_audit::merkle::root(&leaves[..old_size as usize])),
                proof: proof.iter().map(hash_to_b64).collect(),
                checkpoint: note,
            };
            println!("{}", serde_json::to_string_pretty(&file)?);
            Ok(0)
        }
        AuditCmd::Keys { what: Some(KeysCmd::Rotate { name }) } => {
            let old = sealer_key(s, registry_path, key_path)?;
            let name = name.unwrap_or_else(|| next_name(&old.name));
            let next = SealerKey::generate(&name)?;
            let mut sealer =
                Sealer::open(js, &s.stream, s.stream_replicas, old.clone(), sealer::DEFAULT_INTERVAL).await?;
            let size = sealer.handover(next.clone()).await?;
            sealer.release().await;
            // The registry first: a crash after this leaves the old key file, which the
            // operator replaces by running rotate again.
            keys::register(registry_path, &source::origin(&s.stream), &next)?;
            if std::env::var_os("COVENANT_SEALER_KEY").is_none() {
                next.save(key_path)?;
                println!("handover checkpoint at size {size} signed by {} and {name}", old.name);
                println!(
                    "new key {name} written to {}; {} retired in {}",
                    key_path.display(),
                    old.name,
                    registry_path.display()
                );
            } else {
                println!("handover checkpoint at size {size} signed by {} and {name}", old.name);
                println!("set COVENANT_SEALER_KEY={} for the sealer (a secret)", next.to_env_value());
            }
            Ok(0)
        }
        AuditCmd::Status => {
            let cps = source::checkpoints(js, &s.stream).await?;
            let info = js.get_stream(&s.stream).await.context("event stream")?.get_info().await?;
            let last = info.state.last_sequence;
            match cps.last().and_then(|c| SignedNote::parse(&c.text).ok()) {
                None => println!("{}: {last} events, no checkpoint yet (run `covenant audit seal`)", s.stream),
                Some(note) => {
                    let cp = Checkpoint::parse(&note.body).map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!(
                        "{}: {last} events; latest checkpoint #{} covers {} (root {}), signed by {}; unsealed tail {}",
                        s.stream,
                        cps.len(),
                        cp.size,
                        hash_to_b64(&cp.root),
                        note.signatures.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
                        last.saturating_sub(cp.size)
                    );
                }
            }
            Ok(0)
        }
        AuditCmd::Verify { .. } | AuditCmd::CheckProof { .. } | AuditCmd::Keys { .. } => {
            unreachable!("handled without NATS")
        }
    }
}

/// `covenant-sealer-1` → `covenant-sealer-2`; other names get `-2`.
fn next_name(name: &str) -> String {
    match name.rsplit_once('-').and_then(|(base, n)| n.parse::<u64>().ok().map(|n| (base, n))) {
        Some((base, n)) => format!("{base}-{}", n + 1),
        None => format!("{name}-2"),
    }
}

/// The sealer's key: COVENANT_SEALER_KEY, the key file, or a new key file (registered).
fn sealer_key(s: &Settings, registry_path: &std::path::Path, key_path: &std::path::Path) -> Result<SealerKey> {
    if let Ok(v) = std::env::var("COVENANT_SEALER_KEY") {
        return SealerKey::from_env_value(&v);
    }
    if key_path.exists() {
        return SealerKey::load(key_path);
    }
    let key = SealerKey::generate("covenant-sealer-1")?;
    key.save(key_path)?;
    keys::register(registry_path, &source::origin(&s.stream), &key)?;
    eprintln!(
        "created sealer key covenant-sealer-1 in {} and registered it in {}",
        key_path.display(),
        registry_path.display()
    );
    Ok(key)
}

async fn seal_loop(
    sealer: &mut Sealer,
    interval: Duration,
    once: bool,
    key_path: &std::path::Path,
    parent: Option<u32>,
) -> Result<u8> {
    let mut stop = std::pin::pin!(async {
        tokio::select! {
            () = crate::shutdown_signal() => {}
            () = orphaned(parent) => tracing::warn!("the process that started this sealer has ended: stopping"),
        }
    });
    loop {
        // A rotation run by another process replaced the key file: sign with the new key.
        if std::env::var_os("COVENANT_SEALER_KEY").is_none()
            && let Ok(k) = SealerKey::load(key_path)
            && k.name != sealer.key().name
        {
            tracing::info!(key = %k.name, "sealer key changed on disk: signing with it");
            sealer.set_key(k);
        }
        match sealer.round().await {
            Ok(Sealed::Checkpoint(size)) => {
                tracing::info!(size, "checkpoint appended");
                if once {
                    println!("checkpoint appended: size {size}");
                }
            }
            Ok(Sealed::Unchanged(size)) => {
                tracing::debug!(size, "log unchanged");
                if once {
                    println!("nothing new: the latest checkpoint covers {size}");
                }
            }
            Ok(Sealed::NotLeader) => {
                tracing::debug!("another sealer holds the lease");
                if once {
                    println!("another sealer holds the lease");
                }
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "sealing failed");
                if once {
                    return Err(e);
                }
            }
        }
        if once {
            sealer.release().await;
            return Ok(0);
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut stop => {
                sealer.release().await;
                return Ok(0);
            }
        }
    }
}

/// Resolves once process `parent` is no longer this process's parent (it ended, and this
/// one was handed to another), checked every second; never without one.
async fn orphaned(parent: Option<u32>) {
    let Some(parent) = parent else { return std::future::pending().await };
    while std::os::unix::process::parent_id() == parent {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
