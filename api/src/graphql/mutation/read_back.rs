//! Mutation answers read back from the read models: the entity once the projections have
//! applied the write, or a note in `extensions.readModels` saying why it is missing.

use super::*;

/// Why some mutation answers lack their entity: collected per request and returned in the
/// response's `extensions.readModels`, so a stored write is never reported as failed and
/// never silently answered with null.
#[derive(Clone, Default)]
pub struct ReadModelNotes(Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

impl ReadModelNotes {
    fn push(&self, note: serde_json::Value) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(note);
    }

    /// The notes taken, if any.
    pub fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Records that `r`'s entity is not in the answer, and why.
pub(super) fn note(ctx: &Context<'_>, r: &Receipt, reason: &str) {
    if let Some(n) = ctx.data_opt::<ReadModelNotes>() {
        let path = ctx.path_node.map(|p| p.to_string()).unwrap_or_default();
        n.push(serde_json::json!({ "path": path, "sequence": seq(r), "reason": reason }));
    }
}

/// The entity written by `r`, read by `read` once the ledger projection (which holds every
/// entity a mutation answers with) has applied `r`, when the answer selects `field`. A
/// write is stored once `r` exists: if the read models cannot answer in time, the entity
/// is null and the response says why (`extensions.readModels`).
pub(super) async fn entity<T, F>(ctx: &Context<'_>, field: &str, r: &Receipt, read: F) -> Option<T>
where
    F: Future<Output = Result<Option<T>, sqlx::Error>>,
{
    if !ctx.look_ahead().field(field).exists() {
        return None;
    }
    let waited = tokio::time::timeout(ENTITY_WAIT, wait_for_sequence(pool(ctx), &LEDGER, r.sequence, ENTITY_WAIT));
    let reason = match waited.await {
        Ok(Ok(())) => match tokio::time::timeout(ENTITY_WAIT, read).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, sequence = r.sequence, "a stored write's entity could not be read");
                UNAVAILABLE_NOTE
            }
            Err(_) => UNAVAILABLE_NOTE,
        },
        Ok(Err(WaitError::Database(e))) => {
            tracing::warn!(error = %e, sequence = r.sequence, "a stored write's entity could not be read");
            UNAVAILABLE_NOTE
        }
        Ok(Err(WaitError::Timeout { .. })) | Err(_) => PENDING_NOTE,
    };
    note(ctx, r, reason);
    None
}

pub(super) const UNAVAILABLE_NOTE: &str =
    "the write is stored at this sequence; the read models are unavailable, so the entity is not in this answer";
pub(super) const PENDING_NOTE: &str = "the write is stored at this sequence; the read models had not applied it within 2 s (query with Covenant-Min-Sequence to read it)";
