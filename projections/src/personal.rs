//! Opening the personal fields of a batch before it is projected (DESIGN section 11).
//!
//! Each user's key is read once per batch. A user forgotten in the batch has its key erased
//! first (a no-op when the forget already did), so replaying the stream after a key backup
//! was restored (a rebuild) erases those keys again. A field whose key is gone is withheld
//! (the read models show the placeholder); a field that does not open with its key is the
//! event's problem, and the event is skipped with that reason (counted and logged, never
//! silent). A key store that does not answer stops the batch: the caller retries, it never
//! projects without the key.

use std::collections::HashMap;

use bytes::Bytes;
use covenant_domain::personal_fields;
use covenant_personal::{DataKey, KeyError, KeyStore, Place, seal};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::event::ProjectedEvent;

/// Key reads in flight while a batch is opened.
const KEY_READS_IN_FLIGHT: usize = 64;

/// The `user.forgotten` event type.
const FORGOTTEN_TYPE: &str = "user.forgotten";

/// Opens the sealed personal fields of `events` in place when `open` (see the module's
/// text); erases the keys of the users forgotten in `events` either way.
///
/// # Errors
/// [`KeyError`] when the key store does not answer; nothing is opened then.
pub async fn open_events(keys: &KeyStore, events: &mut [ProjectedEvent], open: bool) -> Result<(), KeyError> {
    let sealed = |e: &ProjectedEvent| {
        let fields = personal_fields(&e.aggregate, &e.event_type);
        !fields.is_empty() && e.opened.is_none() && seal::is_sealed(&e.payload, fields)
    };
    if !events.iter().any(|e| sealed(e) || e.event_type == FORGOTTEN_TYPE) {
        return Ok(());
    }
    let mut known: HashMap<String, Option<DataKey>> = HashMap::new();
    for e in events.iter().filter(|e| e.event_type == FORGOTTEN_TYPE && e.aggregate == "user") {
        if keys.forget(&e.aggregate_id).await? {
            tracing::info!(user_id = %e.aggregate_id, seq = e.seq, "erased the key of a forgotten user");
        }
        known.insert(e.aggregate_id.clone(), None);
    }
    if !open {
        return Ok(());
    }
    // Each other owner's key, read concurrently (one round trip for the batch, not one
    // per user: a backlog of logins names thousands).
    let mut owners: Vec<String> = events
        .iter()
        .filter(|e| sealed(e) && !known.contains_key(&e.aggregate_id))
        .map(|e| e.aggregate_id.clone())
        .collect();
    owners.sort_unstable();
    owners.dedup();
    // Owned futures (a clone of the store each): borrowing ones are not provably `Send`
    // inside a spawned runner.
    let fetched: Vec<(String, Option<DataKey>)> = futures::stream::iter(owners)
        .map(|owner| {
            let keys = keys.clone();
            async move { keys.get(&owner).await.map(|k| (owner, k)) }
        })
        .buffer_unordered(KEY_READS_IN_FLIGHT)
        .try_collect()
        .await?;
    known.extend(fetched);
    for e in events.iter_mut().filter(|e| sealed(e)) {
        let key = known.get(&e.aggregate_id).cloned().flatten();
        let fields = personal_fields(&e.aggregate, &e.event_type);
        let place = Place { owner: &e.aggregate_id, event_type: &e.event_type };
        e.opened =
            Some(seal::open(&e.payload, fields, place, key.as_ref()).map(Bytes::from).map_err(|err| err.to_string()));
    }
    Ok(())
}

/// `e` and its causes, outermost first, for a log line.
pub fn describe(e: &KeyError) -> String {
    let mut out = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
