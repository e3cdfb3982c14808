//! The API's one error type, mapped to GraphQL `extensions.code` without leaking internals.

use async_graphql::ErrorExtensions;

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
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
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
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", self.code()))
    }
}

/// Result of a resolver.
pub type ApiResult<T> = Result<T, async_graphql::Error>;

/// Converts any [`ApiError`]-convertible error into a GraphQL error with its code.
pub fn gql<E: Into<ApiError>>(e: E) -> async_graphql::Error {
    e.into().extend()
}
