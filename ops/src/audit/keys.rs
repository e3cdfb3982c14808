//! The sealer's signing key (a file, or `COVENANT_SEALER_KEY`; the API never reads either)
//! and the public key registry auditors verify with (`keys.json`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use covenant_audit::note::NoteSigner;
use covenant_audit::verify::{KeyRegistry, RegistryKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// A sealer key: a C2SP key name and an Ed25519 seed.
#[derive(Clone, Serialize, Deserialize)]
pub struct SealerKey {
    /// Key name, as it appears on signature lines.
    pub name: String,
    /// Base64 of the 32-byte seed.
    seed: String,
}

impl std::fmt::Debug for SealerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealerKey").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SealerKey {
    /// A new random key named `name`.
    ///
    /// # Errors
    /// A name with spaces or `+`.
    pub fn generate(name: &str) -> Result<Self> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = Self { name: name.to_owned(), seed: STANDARD.encode(seed) };
        key.signer()?;
        Ok(key)
    }

    /// Parses `COVENANT_SEALER_KEY`: `NAME:BASE64SEED`.
    ///
    /// # Errors
    /// When it is not of that form.
    pub fn from_env_value(v: &str) -> Result<Self> {
        let (name, seed) = v
            .trim()
            .split_once(':')
            .context("COVENANT_SEALER_KEY must be NAME:BASE64SEED (see `covenant audit keys init --print`)")?;
        let key = Self { name: name.to_owned(), seed: seed.to_owned() };
        key.signer()?;
        Ok(key)
    }

    /// The `NAME:BASE64SEED` form.
    pub fn to_env_value(&self) -> String {
        format!("{}:{}", self.name, self.seed)
    }

    /// Reads a key file.
    ///
    /// # Errors
    /// When the file is missing or malformed.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the sealer key {}", path.display()))?;
        let key: Self =
            serde_json::from_str(&text).with_context(|| format!("{} is not a sealer key file", path.display()))?;
        key.signer()?;
        Ok(key)
    }

    /// Writes the key file, readable by its owner only.
    ///
    /// # Errors
    /// File system errors.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The note signer.
    ///
    /// # Errors
    /// A malformed seed or name.
    pub fn signer(&self) -> Result<NoteSigner> {
        let raw = STANDARD.decode(&self.seed).context("the sealer key's seed is not base64")?;
        let seed: [u8; 32] = raw.try_into().map_err(|_| anyhow::anyhow!("the sealer key's seed must be 32 bytes"))?;
        NoteSigner::new(&self.name, &seed).map_err(|e| anyhow::anyhow!("sealer key: {e}"))
    }

    /// The public verifier key auditors register.
    ///
    /// # Errors
    /// As [`SealerKey::signer`].
    pub fn vkey(&self) -> Result<String> {
        Ok(self.signer()?.verifier().to_vkey())
    }
}

/// Reads the registry (an empty one when the file does not exist yet).
///
/// # Errors
/// A file that exists but does not parse.
pub fn load_registry(path: &Path) -> Result<KeyRegistry> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not a key registry", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyRegistry::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the registry.
///
/// # Errors
/// File system errors.
pub fn save_registry(path: &Path, registry: &KeyRegistry) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(registry)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Adds `key` to the registry at `path` as the active key, marking the others retired.
///
/// # Errors
/// File errors, or a registry for another log.
pub fn register(path: &Path, origin: &str, key: &SealerKey) -> Result<()> {
    let mut reg = load_registry(path)?;
    if !reg.origin.is_empty() && reg.origin != origin {
        bail!("{} is the key registry of `{}`, not `{origin}`", path.display(), reg.origin);
    }
    reg.origin = origin.to_owned();
    let vkey = key.vkey()?;
    for k in &mut reg.keys {
        k.status = "retired".into();
    }
    match reg.keys.iter_mut().find(|k| k.vkey == vkey) {
        Some(k) => k.status = "active".into(),
        None => reg.keys.push(RegistryKey { vkey, status: "active".into() }),
    }
    save_registry(path, &reg)
}
