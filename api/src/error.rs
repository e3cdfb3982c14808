//! The API's one error type, mapped to GraphQL `extensions.code` without leaking internals.

use async_graphql::ErrorExtensions;

/// The documented `extensions.code` values (README, "Errors"): every error the API answers
/// carries exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request or an argument is not valid; nothing ran.
    BadUserInput,
    /// No valid bearer token where one is needed.
    Unauthenticated,
    /// The caller's role may not do this.
    Forbidden,
    /// Nothing with that id.
    NotFound,
    /// The aggregate kept changing concurrently, or the idempotency key is in use.
    Conflict,
    /// Over a rate limit (HTTP 429 with `Retry-After`).
    RateLimited,
    /// A dependency is down or a wait ran out.
    Unavailable,
    /// A bug; the cause is logged, never returned.
    Internal,
}

impl Code {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::RateLimited => "RATE_LIMITED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

/// Every way a GraphQL operation can fail, as clients see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that is not valid (`BAD_USER_INPUT`).
    #[error("{0}")]
    BadInput(String),
    /// Nothing with that id (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// A dependency is down or a wait timed out (`UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (`INTERNAL`); the cause is logged, never returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The `extensions.code` value.
    pub fn code(&self) -> Code {
        match self {
            ApiError::BadInput(_) => Code::BadUserInput,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ApiError::Unavailable("read models unavailable".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", self.code().as_str()))
    }
}

/// An error and its causes, outermost first (how the server logs what it never sends).
pub use covenant_commands::error::chain;

/// Result of a resolver.
pub type ApiResult<T> = Result<T, async_graphql::Error>;

/// Converts any [`ApiError`]-convertible error into a GraphQL error with its code.
pub fn gql<E: Into<ApiError>>(e: E) -> async_graphql::Error {
    e.into().extend()
}
