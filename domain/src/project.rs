//! The Project aggregate: funded work in a registered country, with a status and a soft delete.
//!
//! Id: a UUID (`covenant.events.project.<uuid>`).
//!
//! **Where the "registered country" check lives.** Aggregates are independent consistency
//! boundaries, so a project cannot read the country aggregate's state. `Create` asks a
//! [`CountryDirectory`] service (the command side answers it with a leader read of the
//! country's subject on JetStream). The answer cannot go stale in a way that matters:
//! countries are never deleted, so a country that was registered when the project was
//! created stays registered.

use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::codec::{CovenantAggregate, IdError, validate_uuid_id};
use crate::values::{CountryCode, Name, Usd};

/// Answers whether a country is registered.
#[async_trait::async_trait]
pub trait CountryDirectory: Send + Sync {
    /// Whether `code` has been registered.
    ///
    /// # Errors
    /// A description of why the directory could not answer (e.g. the log is unreachable).
    async fn is_registered(&self, code: &CountryCode) -> Result<bool, String>;
}

/// The services a project needs to decide.
pub type ProjectServices = Arc<dyn CountryDirectory>;

/// A project's lifecycle. It moves forward only: proposed → active → completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProjectStatus {
    /// Created, not started.
    #[default]
    Proposed,
    /// Under way.
    Active,
    /// Done.
    Completed,
}

impl ProjectStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Proposed => "proposed",
            ProjectStatus::Active => "active",
            ProjectStatus::Completed => "completed",
        }
    }
}

/// What may be asked of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProjectCommand {
    /// Creates a proposed project in a registered country.
    Create {
        /// The country it is in.
        country_code: CountryCode,
        /// Display name.
        name: Name,
        /// Budget in whole USD.
        budget_usd: Usd,
    },
    /// Changes any of name, budget and status; at least one must change.
    Update {
        /// New name.
        name: Option<Name>,
        /// New budget.
        budget_usd: Option<Usd>,
        /// New status (forward only).
        status: Option<ProjectStatus>,
    },
    /// Soft-deletes the project; it refuses every change afterwards.
    Delete,
}

/// `project.create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectCreated {
    /// The country it is in.
    pub country_code: CountryCode,
    /// Display name.
    pub name: Name,
    /// Budget in whole USD.
    pub budget_usd: Usd,
}

/// `project.update`: only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProjectUpdated {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// New budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<Usd>,
    /// New status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProjectStatus>,
}

/// `project.delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProjectDeleted {}

/// Facts about a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProjectEvent {
    /// See [`ProjectCreated`].
    Created(ProjectCreated),
    /// See [`ProjectUpdated`].
    Updated(ProjectUpdated),
    /// See [`ProjectDeleted`].
    Deleted(ProjectDeleted),
}

crate::stored_events!(ProjectEvent {
    Created(ProjectCreated) = "project.create",
    Updated(ProjectUpdated) = "project.update",
    Deleted(ProjectDeleted) = "project.delete",
});

/// Why a project command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    /// Create on an existing project.
    #[error("project already exists")]
    AlreadyExists,
    /// Update or delete of a project that was never created.
    #[error("project not found")]
    NotFound,
    /// Any change to a soft-deleted project.
    #[error("project is deleted")]
    Deleted,
    /// Create in a country that is not registered.
    #[error("country {0} is not registered")]
    UnknownCountry(String),
    /// An update that changes nothing.
    #[error("the update changes nothing")]
    NothingToUpdate,
    /// A status change backwards.
    #[error("status cannot move from {from} back to {to}")]
    StatusBackwards {
        /// Current status.
        from: &'static str,
        /// Requested status.
        to: &'static str,
    },
    /// The country directory could not answer (infrastructure, not a refusal).
    #[error("country directory unavailable: {0}")]
    DirectoryUnavailable(String),
}

/// A project as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Project {
    created: Option<ProjectCreated>,
    name: Option<Name>,
    budget_usd: Usd,
    status: ProjectStatus,
    deleted: bool,
}

impl Project {
    /// The pure decision for `command`, given whether its country is registered (only
    /// consulted by `Create`).
    ///
    /// # Errors
    /// [`ProjectError`] when the command is refused.
    pub fn decide(&self, command: ProjectCommand, country_registered: bool) -> Result<Vec<ProjectEvent>, ProjectError> {
        match command {
            ProjectCommand::Create { country_code, name, budget_usd } => {
                if self.created.is_some() {
                    return Err(ProjectError::AlreadyExists);
                }
                if !country_registered {
                    return Err(ProjectError::UnknownCountry(country_code.to_string()));
                }
                Ok(vec![ProjectEvent::Created(ProjectCreated { country_code, name, budget_usd })])
            }
            _ if self.created.is_none() => Err(ProjectError::NotFound),
            _ if self.deleted => Err(ProjectError::Deleted),
            ProjectCommand::Update { name, budget_usd, status } => self.decide_update(name, budget_usd, status),
            ProjectCommand::Delete => Ok(vec![ProjectEvent::Deleted(ProjectDeleted {})]),
        }
    }

    fn decide_update(
        &self,
        name: Option<Name>,
        budget_usd: Option<Usd>,
        status: Option<ProjectStatus>,
    ) -> Result<Vec<ProjectEvent>, ProjectError> {
        if let Some(to) = status
            && to < self.status
        {
            return Err(ProjectError::StatusBackwards { from: self.status.as_str(), to: to.as_str() });
        }
        let changed = ProjectUpdated {
            name: name.filter(|n| Some(n) != self.name.as_ref()),
            budget_usd: budget_usd.filter(|b| *b != self.budget_usd),
            status: status.filter(|s| *s != self.status),
        };
        if changed == ProjectUpdated::default() {
            return Err(ProjectError::NothingToUpdate);
        }
        Ok(vec![ProjectEvent::Updated(changed)])
    }

    /// The country a `Create` names, which the handler looks up first.
    fn country_to_check(command: &ProjectCommand) -> Option<&CountryCode> {
        match command {
            ProjectCommand::Create { country_code, .. } => Some(country_code),
            _ => None,
        }
    }
}

impl Aggregate for Project {
    const TYPE: &'static str = "project";
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = ProjectError;
    type Services = ProjectServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        directory: &ProjectServices,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let registered = match Self::country_to_check(&command) {
            Some(code) if self.created.is_none() => {
                directory.is_registered(code).await.map_err(ProjectError::DirectoryUnavailable)?
            }
            _ => false,
        };
        for event in self.decide(command, registered)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ProjectEvent::Created(c) => {
                self.name = Some(c.name.clone());
                self.budget_usd = c.budget_usd;
                self.created = Some(c);
            }
            ProjectEvent::Updated(u) => {
                self.name = u.name.or(self.name.take());
                self.budget_usd = u.budget_usd.unwrap_or(self.budget_usd);
                self.status = u.status.unwrap_or(self.status);
            }
            ProjectEvent::Deleted(_) => self.deleted = true,
        }
    }
}

impl CovenantAggregate for Project {
    fn command_name(command: &ProjectCommand) -> &'static str {
        match command {
            ProjectCommand::Create { .. } => "create",
            ProjectCommand::Update { .. } => "update",
            ProjectCommand::Delete => "delete",
        }
    }

    fn validate_id(id: &str) -> Result<(), IdError> {
        validate_uuid_id("project", id)
    }
}

#[cfg(test)]
mod tests;
