//! How command outcomes become GraphQL errors with an `extensions.code`.

use async_graphql::ErrorExtensions;
use covenant_commands::CommandError;
use covenant_domain::{CountryError, ProjectError, SecurityError, UserError};

use crate::error::ApiError;

/// A GraphQL error with `code`.
pub fn err(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// The `extensions.code` of a refusal.
pub trait RefusalCode {
    /// The code.
    fn code(&self) -> &'static str;
}

impl RefusalCode for CountryError {
    fn code(&self) -> &'static str {
        if matches!(self, CountryError::NotRegistered) { "NOT_FOUND" } else { "BAD_USER_INPUT" }
    }
}

impl RefusalCode for ProjectError {
    fn code(&self) -> &'static str {
        match self {
            ProjectError::NotFound => "NOT_FOUND",
            ProjectError::DirectoryUnavailable(_) => "UNAVAILABLE",
            _ => "BAD_USER_INPUT",
        }
    }
}

impl RefusalCode for UserError {
    fn code(&self) -> &'static str {
        match self {
            UserError::NotFound => "NOT_FOUND",
            UserError::NotAdmin => "FORBIDDEN",
            _ => "BAD_USER_INPUT",
        }
    }
}

impl RefusalCode for SecurityError {
    fn code(&self) -> &'static str {
        if matches!(self, SecurityError::NotAdmin) { "FORBIDDEN" } else { "BAD_USER_INPUT" }
    }
}

/// Maps a command's failure to a coded error (internals are logged, not returned).
pub fn command_error<E: std::error::Error + RefusalCode>(e: CommandError<E>) -> async_graphql::Error {
    match e {
        CommandError::Refused(r) => err(r.code(), r.to_string()),
        CommandError::InvalidInput(m) => err("BAD_USER_INPUT", m),
        CommandError::Conflict { .. } | CommandError::InProgress => err("CONFLICT", e.to_string()),
        CommandError::Unavailable { .. } => {
            err("UNAVAILABLE", "the event log is unavailable; retry (with an idempotency key, a retry is safe)")
        }
        CommandError::Internal(m) => ApiError::Internal(m).extend(),
    }
}
