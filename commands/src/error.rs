//! Errors of the event log and of command dispatch.
//!
//! "Command refused" (a domain error) is kept apart from "could not record it": a caller
//! maps the first to a 4xx, [`CommandError::Conflict`] to a retryable conflict, and
//! [`CommandError::Unavailable`] to a 503.

/// The error underneath a [`LogError`] (the client's or the server's), shared so the error
/// stays `Clone`; logged as the error's chain, never sent to clients.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why the event log could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The subject moved on since the tip the append was built on (optimistic concurrency).
    #[error("concurrent append on {subject}: expected last sequence {expected}")]
    Conflict {
        /// Subject.
        subject: String,
        /// The stream sequence the append expected.
        expected: u64,
    },
    /// NATS cannot be reached or did not answer; for an append, the outcome is unknown
    /// when `outcome_unknown` is set (the events may or may not be stored).
    #[error("event log unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
        /// Whether an append may have been stored despite the error.
        outcome_unknown: bool,
        /// The client's error, when there is one.
        #[source]
        cause: Option<Cause>,
    },
    /// The request itself is not valid (subject, sizes).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A stored message does not have the shape Covenant writes.
    #[error("message {seq} is malformed: {reason}")]
    Corrupt {
        /// Stream sequence.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The stream's configuration departs from the audit trail's requirements.
    #[error("stream {stream} is misconfigured: {problems}")]
    Misconfigured {
        /// Stream name.
        stream: String,
        /// The problems, one per setting.
        problems: String,
    },
    /// The personal-data key store could not give the key a personal field is sealed with;
    /// nothing was appended (a personal field is never stored in plaintext instead).
    #[error("personal-data key store unavailable")]
    KeysUnavailable(#[source] Cause),
    /// Anything else the server answered.
    #[error("JetStream error: {what}")]
    Server {
        /// What was being done.
        what: String,
        /// The client's error, when there is one.
        #[source]
        cause: Option<Cause>,
    },
}

impl LogError {
    /// An unavailable error whose append surely did not happen, with no error underneath.
    pub fn unavailable(reason: impl std::fmt::Display) -> Self {
        LogError::Unavailable { reason: reason.to_string(), outcome_unknown: false, cause: None }
    }

    /// An unavailable error whose append surely did not happen: `what` was being done when
    /// `cause` happened.
    pub fn unavailable_from(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        LogError::Unavailable { reason: what.into(), outcome_unknown: false, cause: Some(std::sync::Arc::new(cause)) }
    }

    /// An unexpected answer of the server: `what` was being done when `cause` happened.
    pub fn server(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        LogError::Server { what: what.into(), cause: Some(std::sync::Arc::new(cause)) }
    }

    /// An unexpected answer of the server that is no error value (`what` says what).
    pub fn server_msg(what: impl Into<String>) -> Self {
        LogError::Server { what: what.into(), cause: None }
    }
}

/// `error` and its causes, outermost first, joined by `: ` (for logs and for the reason a
/// [`CommandError::Unavailable`] carries).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// Why a command did not produce an acknowledged result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command (business rule). Nothing was appended.
    #[error("{0}")]
    Refused(E),
    /// The id or a field is not valid input. Nothing was appended.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Other writers kept winning the race for this aggregate; nothing was appended.
    #[error("conflict: the aggregate changed concurrently {attempts} times; retry")]
    Conflict {
        /// How many times the command was tried.
        attempts: u32,
    },
    /// The same idempotency key is being processed by another request right now.
    #[error("a command with this idempotency key is still in progress")]
    InProgress,
    /// The log is unreachable; see [`LogError::Unavailable`] for whether it may have applied.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
        /// Whether the command may have been applied despite the error.
        outcome_unknown: bool,
    },
    /// The personal-data key store did not answer; nothing was appended.
    #[error("personal-data key store unavailable: {reason}")]
    KeysUnavailable {
        /// The error's chain (logged, never sent to clients).
        reason: String,
    },
    /// A stored event could not be read back, or the server answered something unexpected;
    /// the log's error is the source (callers log the chain, never send it).
    #[error("internal error")]
    Internal(#[source] LogError),
}

impl<E: std::error::Error> From<LogError> for CommandError<E> {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Conflict { .. } => CommandError::Conflict { attempts: 1 },
            LogError::Unavailable { reason, outcome_unknown, cause } => CommandError::Unavailable {
                reason: match cause {
                    Some(c) => format!("{reason}: {}", chain(c.as_ref())),
                    None => reason,
                },
                outcome_unknown,
            },
            LogError::Invalid(r) => CommandError::InvalidInput(r),
            LogError::KeysUnavailable(cause) => CommandError::KeysUnavailable { reason: chain(cause.as_ref()) },
            other => CommandError::Internal(other),
        }
    }
}
