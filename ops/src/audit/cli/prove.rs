//! `covenant audit prove` and `audit check-proof`: inclusion and consistency proofs against
//! the latest signed checkpoint, and checking a proof file offline.

use super::*;

/// The latest checkpoint (note text, size) and the leaves it covers.
pub(super) async fn sealed_leaves(
    js: &async_nats::jetstream::Context,
    events: &str,
) -> Result<(String, u64, Vec<covenant_audit::Hash>)> {
    let cps = source::checkpoints(js, events).await?;
    let latest = cps.last().context("no checkpoint yet: run `covenant audit seal`")?;
    let note = SignedNote::parse(&latest.text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cp = Checkpoint::parse(&note.body).map_err(|e| anyhow::anyhow!("{e}"))?;
    let size = cp.size;
    let stream = js.get_stream(events).await.context("event stream")?;
    let mut leaves = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut bad = None;
    source::scan(&stream, 1, size, true, |seq, m, _| {
        if seq != leaves.len() as u64 + 1 {
            bad.get_or_insert(seq);
        }
        leaves.push(source::leaf(&m).unwrap_or([0; 32]));
    })
    .await?;
    if bad.is_some() || leaves.len() as u64 != size || covenant_audit::merkle::root(&leaves) != cp.root {
        bail!("the stream does not match its latest checkpoint: run `covenant audit verify`");
    }
    Ok((latest.text.clone(), size, leaves))
}

pub(super) fn check_proof(registry_path: &std::path::Path, file: &std::path::Path) -> Result<u8> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let proof: ProofFile = serde_json::from_str(&text).context("not a proof printed by `covenant audit prove`")?;
    let registry = keys::load_registry(registry_path)?;
    let checkpoint = match &proof {
        ProofFile::Inclusion { checkpoint, .. } | ProofFile::Consistency { checkpoint, .. } => checkpoint,
    };
    let signed = signed_by_registry(checkpoint, &registry);
    match (proof.check(), signed) {
        (Ok((origin, size, root)), Some(key)) => {
            println!(
                "valid: proof leads to checkpoint {origin} size {size} root {} signed by {key}",
                hash_to_b64(&root)
            );
            Ok(0)
        }
        (Ok(_), None) => {
            println!("INVALID: the checkpoint is not signed by a key of {}", registry_path.display());
            Ok(1)
        }
        (Err(e), _) => {
            println!("INVALID: {e}");
            Ok(1)
        }
    }
}

/// The name of a registry key whose signature on `note` verifies.
pub(super) fn signed_by_registry(note: &str, registry: &KeyRegistry) -> Option<String> {
    let note = SignedNote::parse(note).ok()?;
    registry.keys.iter().filter_map(|k| NoteVerifier::parse(&k.vkey).ok()).find_map(|v| {
        note.signatures.iter().any(|s| s.key_id == v.id() && v.verify(&note.body, s)).then(|| v.name().to_owned())
    })
}
