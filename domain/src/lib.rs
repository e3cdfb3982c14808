//! Covenant's domain: the Country, Project, User and Security aggregates, their commands,
//! events, value types and refusals.
//!
//! Pure: no I/O, no runtime, no network or database crate (a test in `ops` checks the
//! dependency tree). `tokio` appears only transitively, through cqrs-es's `EventSink`
//! (its `sync` mutex). Each aggregate's `handle` is a thin async layer that gathers facts
//! through service traits and calls a pure, synchronous `decide`, so a refused command
//! leaves the aggregate untouched.
//!
//! Modules:
//! - [`values`]: `Usd`, `CountryCode`, `Name`, `Email`, `Role`, `Actor`.
//! - [`codec`]: event type names and payload bytes ([`EventCodec`]), id rules.
//! - [`country`], [`project`], [`user`], [`security`]: the aggregates.
//! - [`iso3166`]: the assigned alpha-2 codes.
//! - [`personal`]: which event fields are personal data, and [`Personal`] values.

pub mod codec;
pub mod country;
pub mod iso3166;
pub mod personal;
pub mod project;
pub mod security;
pub mod user;
pub mod values;

pub use codec::{CovenantAggregate, DecodeError, EventCodec, IdError};
pub use country::{Country, CountryCommand, CountryError, CountryEvent};
pub use personal::{Personal, personal_fields};
pub use project::{CountryDirectory, Project, ProjectCommand, ProjectError, ProjectEvent, ProjectStatus};
pub use security::{SECURITY_ID, Security, SecurityCommand, SecurityError, SecurityEvent};
pub use user::{User, UserCommand, UserError, UserEvent};
pub use values::{Actor, CountryCode, Email, Name, Role, Usd};
