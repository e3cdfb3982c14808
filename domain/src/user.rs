//! The User aggregate: registration, role changes, logins, logouts and forgetting.
//!
//! Id: a UUID (`covenant.events.user.<uuid>`). Password hashes never enter an event (the
//! stream is immutable for years); they live in PostgreSQL beside the read models. The
//! email and the login address are personal fields ([`crate::personal`]): stored sealed
//! with the user's own key, so that deleting the key (`user.forgotten`) erases them while
//! the chain of stored bytes stays intact. The aggregate keeps neither (its snapshots are
//! stored too); it never needs them to decide.

use std::net::IpAddr;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::codec::{CovenantAggregate, IdError, validate_uuid_id};
use crate::personal::Personal;
use crate::values::{Actor, Email, Role};

/// What may be asked of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Registers a user; only an admin (or the system, for bootstrap) may.
    Register {
        /// Login address.
        email: Email,
        /// Initial role.
        role: Role,
        /// Who asks.
        actor: Actor,
    },
    /// Changes the user's role; only an admin (or the system) may.
    ChangeRole {
        /// New role.
        role: Role,
        /// Who asks.
        actor: Actor,
    },
    /// Records a successful login from `ip`.
    RecordLogin {
        /// Client address.
        ip: IpAddr,
    },
    /// Records a logout, ending the token `token` (its `jti`) everywhere.
    RecordLogout {
        /// The token the user signed out with.
        token: Option<uuid::Uuid>,
    },
    /// Forgets the user (admin or the system): from `user.forgotten` on, every command is
    /// refused; the caller then deletes the user's key, which erases the personal fields.
    Forget {
        /// Who asks.
        actor: Actor,
    },
}

/// `user.registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// Login address (personal: sealed in the stream).
    pub email: Personal<Email>,
    /// Initial role.
    pub role: Role,
}

/// `user.role_change`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    /// Role before.
    pub old_role: Role,
    /// Role after.
    pub new_role: Role,
}

/// `user.login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    /// Client address (personal: sealed in the stream).
    pub ip: Personal<IpAddr>,
}

/// `user.logout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserLoggedOut {
    /// The token (its `jti`) ended by the logout: every instance refuses it from this event
    /// on, without asking PostgreSQL. Absent in events written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<uuid::Uuid>,
}

/// `user.forgotten`: the user's personal data was erased (its key deleted). Carries no
/// personal data itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserForgotten {}

/// Facts about a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    /// See [`UserRegistered`].
    Registered(UserRegistered),
    /// See [`UserRoleChanged`].
    RoleChanged(UserRoleChanged),
    /// See [`UserLoggedIn`].
    LoggedIn(UserLoggedIn),
    /// See [`UserLoggedOut`].
    LoggedOut(UserLoggedOut),
    /// See [`UserForgotten`].
    Forgotten(UserForgotten),
}

crate::stored_events!(UserEvent {
    Registered(UserRegistered) = "user.registered",
    RoleChanged(UserRoleChanged) = "user.role_change",
    LoggedIn(UserLoggedIn) = "user.login",
    LoggedOut(UserLoggedOut) = "user.logout",
    Forgotten(UserForgotten) = "user.forgotten",
});

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// Registration or role change by a non-admin.
    #[error("only an admin may do this")]
    NotAdmin,
    /// Register on an existing user.
    #[error("user already exists")]
    AlreadyRegistered,
    /// Anything but Register on an unknown user.
    #[error("user not found")]
    NotFound,
    /// A role change to the current role.
    #[error("the user already has role {0}")]
    RoleUnchanged(&'static str),
    /// Any command to a forgotten user.
    #[error("the user was forgotten")]
    Forgotten,
}

/// A user as its events left them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    role: Option<Role>,
    #[serde(default)]
    forgotten: bool,
}

impl User {
    /// The current role, once registered (`None` again once forgotten).
    pub fn role(&self) -> Option<Role> {
        if self.forgotten { None } else { self.role }
    }

    /// Whether the user was forgotten.
    pub fn is_forgotten(&self) -> bool {
        self.forgotten
    }

    /// The pure decision for `command`.
    ///
    /// # Errors
    /// [`UserError`] when refused.
    pub fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Register { actor, .. } | UserCommand::Forget { actor } if !actor.is_admin() => {
                Err(UserError::NotAdmin)
            }
            _ if self.forgotten => Err(UserError::Forgotten),
            UserCommand::Register { .. } if self.role.is_some() => Err(UserError::AlreadyRegistered),
            UserCommand::Register { email, role, .. } => {
                Ok(vec![UserEvent::Registered(UserRegistered { email: Personal::Known(email), role })])
            }
            _ if self.role.is_none() => Err(UserError::NotFound),
            UserCommand::ChangeRole { role, actor } => self.decide_role_change(role, &actor),
            UserCommand::RecordLogin { ip } => Ok(vec![UserEvent::LoggedIn(UserLoggedIn { ip: Personal::Known(ip) })]),
            UserCommand::RecordLogout { token } => Ok(vec![UserEvent::LoggedOut(UserLoggedOut { token_id: token })]),
            UserCommand::Forget { .. } => Ok(vec![UserEvent::Forgotten(UserForgotten {})]),
        }
    }

    fn decide_role_change(&self, role: Role, actor: &Actor) -> Result<Vec<UserEvent>, UserError> {
        if !actor.is_admin() {
            return Err(UserError::NotAdmin);
        }
        let old_role = self.role.ok_or(UserError::NotFound)?;
        if old_role == role {
            return Err(UserError::RoleUnchanged(role.as_str()));
        }
        Ok(vec![UserEvent::RoleChanged(UserRoleChanged { old_role, new_role: role })])
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::Registered(r) => self.role = Some(r.role),
            UserEvent::RoleChanged(c) => self.role = Some(c.new_role),
            UserEvent::LoggedIn(_) | UserEvent::LoggedOut(_) => {}
            UserEvent::Forgotten(_) => self.forgotten = true,
        }
    }
}

impl CovenantAggregate for User {
    fn command_name(command: &UserCommand) -> &'static str {
        match command {
            UserCommand::Register { .. } => "register",
            UserCommand::ChangeRole { .. } => "change_role",
            UserCommand::RecordLogin { .. } => "login",
            UserCommand::RecordLogout { .. } => "logout",
            UserCommand::Forget { .. } => "forget",
        }
    }

    fn validate_id(id: &str) -> Result<(), IdError> {
        validate_uuid_id("user", id)
    }
}

#[cfg(test)]
mod tests;
