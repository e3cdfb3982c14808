//! How command outcomes become GraphQL errors with an `extensions.code`.

use async_graphql::ErrorExtensions;
use covenant_commands::CommandError;
use covenant_domain::{CountryError, ProjectError, SecurityError, UserError};

use crate::error::{ApiError, Code};

/// A GraphQL error with `code`.
pub fn err(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code.as_str()))
}

/// The `extensions.code` of a refusal.
pub trait RefusalCode {
    /// The code.
    fn code(&self) -> Code;
}

impl RefusalCode for CountryError {
    fn code(&self) -> Code {
        if matches!(self, CountryError::NotRegistered) { Code::NotFound } else { Code::BadUserInput }
    }
}

impl RefusalCode for ProjectError {
    fn code(&self) -> Code {
        match self {
            ProjectError::NotFound => Code::NotFound,
            ProjectError::DirectoryUnavailable(_) => Code::Unavailable,
            _ => Code::BadUserInput,
        }
    }
}

impl RefusalCode for UserError {
    fn code(&self) -> Code {
        match self {
            UserError::NotFound => Code::NotFound,
            UserError::NotAdmin => Code::Forbidden,
            _ => Code::BadUserInput,
        }
    }
}

impl RefusalCode for SecurityError {
    fn code(&self) -> Code {
        if matches!(self, SecurityError::NotAdmin) { Code::Forbidden } else { Code::BadUserInput }
    }
}

/// Maps a command's failure to a coded error (internals are logged, not returned).
pub fn command_error<E: std::error::Error + RefusalCode>(e: CommandError<E>) -> async_graphql::Error {
    match e {
        CommandError::Refused(r) => err(r.code(), r.to_string()),
        CommandError::InvalidInput(m) => err(Code::BadUserInput, m),
        CommandError::Conflict { .. } | CommandError::InProgress => err(Code::Conflict, e.to_string()),
        CommandError::Unavailable { .. } => {
            err(Code::Unavailable, "the event log is unavailable; retry (with an idempotency key, a retry is safe)")
        }
        CommandError::KeysUnavailable { reason } => {
            tracing::error!(error = %reason, "personal-data key store unavailable; the command was not stored");
            err(Code::Unavailable, "the personal-data key store is unavailable; nothing was stored; retry")
        }
        CommandError::Internal(_) => ApiError::Internal(crate::error::chain(&e)).extend(),
    }
}
