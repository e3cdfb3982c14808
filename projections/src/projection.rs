//! What a projection is: a name, its tables, and how it applies a batch of events inside
//! the runner's transaction.

use sqlx::PgConnection;

use crate::event::ProjectedEvent;

/// Table names of one copy of a projection's read model: the live tables (no suffix), the
/// shadow copy a rebuild fills (`__shadow`) or the fold a verification compares with
/// (`__verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    suffix: &'static str,
}

impl Tables {
    /// The live tables.
    pub const LIVE: Tables = Tables { suffix: "" };
    /// The shadow tables of a rebuild.
    pub const SHADOW: Tables = Tables { suffix: "__shadow" };
    /// The fold of a verification.
    pub const VERIFY: Tables = Tables { suffix: "__verify" };

    /// The name of `base` in this copy (names come from code, never from input).
    pub fn name(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }

    /// The checkpoint row name of `projection` for this copy.
    pub fn checkpoint(&self, projection: &str) -> String {
        format!("{projection}{}", self.suffix)
    }
}

/// The durable consumer name of a projection (`projection-<name>`; never rename).
pub fn consumer_name(projection: &str) -> String {
    format!("projection-{projection}")
}

/// An event a projection skipped, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Stream sequence.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// Event type.
    pub event_type: String,
    /// Why it could not be applied (an unknown type, a payload that does not decode).
    pub reason: String,
}

/// What applying a batch changed, for gauges.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Events skipped (unknown type, unparsable payload).
    pub skipped: Vec<Skipped>,
    /// The fund row after the batch, when the projection keeps it.
    pub fund: Option<crate::views::Fund>,
    /// Projects created in this batch.
    pub projects_created: u64,
    /// Where the batch stopped short: the first stream sequence after the checkpoint that
    /// was not delivered. Only the contiguous run before it was applied.
    pub gap: Option<Gap>,
}

/// A hole in what was delivered: sequence `missing` (and perhaps more) did not arrive,
/// `next` did. The stream denies deletes, so a hole is a delivery fault (for example
/// messages of a pull in flight when a stream leader died), never a message that is gone:
/// the checkpoint never moves over one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The first sequence not delivered (the checkpoint + 1).
    pub missing: u64,
    /// The next sequence that was delivered.
    pub next: u64,
}

/// A read model fed by the event stream.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stored name (the durable consumer is `projection-<name>`): never rename.
    fn name(&self) -> &'static str;

    /// Base names of the tables it owns (created as shadows and swapped by a rebuild).
    fn tables(&self) -> &'static [&'static str];

    /// Statements that initialise a fresh copy of the tables (after `CREATE TABLE … LIKE`).
    fn init_sql(&self, _tables: Tables) -> Vec<String> {
        Vec::new()
    }

    /// Whether [`Projection::apply`] decodes personal fields, so each batch's sealed fields
    /// are opened with their users' keys first ([`crate::personal`]). A projection that
    /// keeps payloads as stored (sealed) says no and spares the key reads; forgotten users'
    /// keys are erased for it all the same.
    fn opens_personal_fields(&self) -> bool {
        true
    }

    /// Applies `events` (ascending, all above the checkpoint) to `tables` on `conn`, which
    /// is inside the transaction that also advances the checkpoint.
    ///
    /// # Errors
    /// Database errors (the whole batch is then rolled back and retried).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: Tables,
        events: &[ProjectedEvent],
    ) -> Result<Applied, sqlx::Error>;
}
