//! Result and session types of the mutations.

use async_graphql::{ID, SimpleObject};
use covenant_domain::Role;

use super::types::{Country, Project};

/// A session.
#[derive(SimpleObject)]
pub struct Session {
    /// Bearer token (HS256 JWT).
    pub token: String,
    /// When it expires.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The signed-in user.
    pub user: User,
}

/// A user (never with credentials).
#[derive(SimpleObject, Clone)]
pub struct User {
    /// User id.
    pub id: ID,
    /// Login address.
    pub email: String,
    /// Role.
    pub role: RoleGql,
}

/// Roles.
#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Role")]
pub enum RoleGql {
    /// Users, countries, secrets (and everything a steward may do).
    Admin,
    /// GDP updates and projects.
    Steward,
    /// Read only.
    Viewer,
}

impl From<RoleGql> for Role {
    fn from(r: RoleGql) -> Self {
        match r {
            RoleGql::Admin => Role::Admin,
            RoleGql::Steward => Role::Steward,
            RoleGql::Viewer => Role::Viewer,
        }
    }
}

impl From<Role> for RoleGql {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => RoleGql::Admin,
            Role::Steward => RoleGql::Steward,
            Role::Viewer => RoleGql::Viewer,
        }
    }
}

/// A country mutation's result.
#[derive(SimpleObject)]
pub struct CountryResult {
    /// The country as the read model shows it after the write (null if not there within 2 s).
    pub country: Option<Country>,
    /// Stream sequence of the last event written.
    pub sequence: String,
}

/// A project mutation's result.
#[derive(SimpleObject)]
pub struct ProjectResult {
    /// The project after the write (null if not in the read model within 2 s).
    pub project: Option<Project>,
    /// Stream sequence of the last event written.
    pub sequence: String,
}

/// A user mutation's result.
#[derive(SimpleObject)]
pub struct UserResult {
    /// The user.
    pub user: User,
    /// Stream sequence of the last event written.
    pub sequence: String,
}
