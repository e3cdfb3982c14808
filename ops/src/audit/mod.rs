//! The audit trail's operations: the sealer, the key registry, verification of the live
//! stream or of a bundle, exports and proofs (`covenant audit …`).

pub mod cli;
pub mod export;
pub mod keys;
pub mod sealer;
pub mod source;

use std::path::PathBuf;

/// Where the audit files live, and the sealer's key.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditPaths {
    /// The key registry auditors verify checkpoints with (public keys only).
    #[arg(long = "keys", env = "COVENANT_AUDIT_KEYS", global = true)]
    pub registry: Option<PathBuf>,
    /// The sealer's signing key file (never read by the API).
    #[arg(long = "key-file", env = "COVENANT_SEALER_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
}

impl AuditPaths {
    /// The registry path: `--keys`, else `<data dir>/audit/keys.json`.
    pub fn registry(&self, data_dir: &std::path::Path) -> PathBuf {
        self.registry.clone().unwrap_or_else(|| data_dir.join("audit/keys.json"))
    }

    /// The key file path: `--key-file`, else `<data dir>/audit/sealer.key`.
    pub fn key_file(&self, data_dir: &std::path::Path) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| data_dir.join("audit/sealer.key"))
    }
}
