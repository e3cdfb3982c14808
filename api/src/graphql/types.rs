//! GraphQL object types and scalars.

use async_graphql::{Enum, InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value};
use chrono::{DateTime, Utc};
use covenant_projections::views;

/// Whole US dollars as a decimal string (`"21354105000000"`): GraphQL `Int` is 32-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usd(pub u64);

#[Scalar(name = "Usd")]
impl ScalarType for Usd {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => s
                .parse::<covenant_domain::Usd>()
                .map(|u| Usd(u.get()))
                .map_err(|e| InputValueError::custom(e.to_string())),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

fn usd(v: i64) -> Usd {
    Usd(u64::try_from(v).unwrap_or(0))
}

/// A country.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Current GDP.
    pub gdp_usd: Usd,
    /// Aggregate version (number of events).
    pub version: i64,
    /// Registration time.
    pub registered_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<views::CountryRow> for Country {
    fn from(r: views::CountryRow) -> Self {
        Self {
            code: r.code,
            name: r.name,
            gdp_usd: usd(r.gdp_usd),
            version: r.version,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
        }
    }
}

/// One GDP figure.
#[derive(SimpleObject, Clone)]
pub struct GdpPoint {
    /// Aggregate version that recorded it.
    pub version: i64,
    /// Stream sequence of the event.
    pub sequence: i64,
    /// GDP.
    pub gdp_usd: Usd,
    /// Change from the previous figure, basis points.
    pub delta_bp: Option<i64>,
    /// When it was recorded.
    pub occurred_at: DateTime<Utc>,
}

impl From<views::GdpPoint> for GdpPoint {
    fn from(p: views::GdpPoint) -> Self {
        Self {
            version: p.version,
            sequence: p.seq,
            gdp_usd: usd(p.gdp_usd),
            delta_bp: p.delta_bp,
            occurred_at: p.occurred_at,
        }
    }
}

/// Project lifecycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ProjectStatus {
    /// Created, not started.
    Proposed,
    /// Under way.
    Active,
    /// Done.
    Completed,
}

impl From<ProjectStatus> for covenant_domain::ProjectStatus {
    fn from(s: ProjectStatus) -> Self {
        match s {
            ProjectStatus::Proposed => covenant_domain::ProjectStatus::Proposed,
            ProjectStatus::Active => covenant_domain::ProjectStatus::Active,
            ProjectStatus::Completed => covenant_domain::ProjectStatus::Completed,
        }
    }
}

impl ProjectStatus {
    /// The stored name (the domain's).
    pub fn as_str(self) -> &'static str {
        covenant_domain::ProjectStatus::from(self).as_str()
    }

    fn parse(s: &str) -> Self {
        match s {
            "active" => ProjectStatus::Active,
            "completed" => ProjectStatus::Completed,
            _ => ProjectStatus::Proposed,
        }
    }
}

/// A project.
#[derive(SimpleObject, Clone)]
pub struct Project {
    /// Project id.
    pub id: async_graphql::ID,
    /// Country code.
    pub country_code: String,
    /// Display name.
    pub name: String,
    /// Budget.
    pub budget_usd: Usd,
    /// Status.
    pub status: ProjectStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Soft-delete time.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<views::ProjectRow> for Project {
    fn from(r: views::ProjectRow) -> Self {
        Self {
            id: async_graphql::ID(r.id.to_string()),
            country_code: r.country_code,
            name: r.name,
            budget_usd: usd(r.budget_usd),
            status: ProjectStatus::parse(&r.status),
            created_at: r.created_at,
            deleted_at: r.deleted_at,
        }
    }
}

/// The covenant fund.
#[derive(SimpleObject, Clone)]
pub struct CovenantFund {
    /// Sum of every registered country's GDP.
    pub total_usd: Usd,
    /// Registered countries.
    pub countries: i64,
    /// Live projects.
    pub projects: i64,
    /// Registered users.
    pub users: i64,
    /// The stream sequence these figures reflect.
    pub as_of_sequence: i64,
}

impl From<views::Fund> for CovenantFund {
    fn from(f: views::Fund) -> Self {
        Self {
            total_usd: usd(f.total_usd),
            countries: f.countries,
            projects: f.projects,
            users: f.users,
            as_of_sequence: f.as_of_seq,
        }
    }
}

/// The audit trail's state.
#[derive(SimpleObject, Clone)]
pub struct AuditStatus {
    /// Last sequence of the event stream.
    pub last_sequence: i64,
    /// Sequence the `audit` projection (what `auditEvents` reads) has reached.
    pub projected_sequence: i64,
    /// Events the latest signed checkpoint covers (0: none yet).
    pub checkpoint_size: i64,
    /// Its Merkle root (base64), if any.
    pub checkpoint_root: Option<String>,
    /// When it was appended, if any.
    pub checkpoint_at: Option<DateTime<Utc>>,
    /// The keys that signed it.
    pub checkpoint_signers: Vec<String>,
    /// Events after it, not yet sealed.
    pub unsealed_tail: i64,
}

/// An event of the audit trail.
#[derive(SimpleObject, Clone)]
pub struct AuditEvent {
    /// Stream sequence.
    pub sequence: i64,
    /// Subject (`covenant.events.<aggregate>.<id>`).
    pub subject: String,
    /// Event type.
    pub event_type: String,
    /// User id or `system`.
    pub actor: String,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// Payload (JSON), when it is JSON.
    pub payload: Option<async_graphql::Json<serde_json::Value>>,
}

impl From<views::AuditEventRow> for AuditEvent {
    fn from(r: views::AuditEventRow) -> Self {
        Self {
            sequence: r.seq,
            subject: r.subject,
            event_type: r.event_type,
            actor: r.actor,
            occurred_at: r.occurred_at,
            payload: r.payload.map(async_graphql::Json),
        }
    }
}

impl From<&covenant_projections::event::ProjectedEvent> for AuditEvent {
    /// The same fields the audit projection stores (a payload that is not JSON is null).
    fn from(e: &covenant_projections::event::ProjectedEvent) -> Self {
        Self {
            sequence: i64::try_from(e.seq).unwrap_or(i64::MAX),
            subject: e.subject.clone(),
            event_type: e.event_type.clone(),
            actor: e.actor.clone(),
            occurred_at: e.occurred_at,
            payload: serde_json::from_slice(&e.payload).ok().map(async_graphql::Json),
        }
    }
}

/// Relay-style page information.
#[derive(SimpleObject, Clone)]
pub struct PageInfo {
    /// Whether a next page exists.
    pub has_next_page: bool,
    /// Cursor of the last edge.
    pub end_cursor: Option<String>,
}

/// A page of countries (`totalCount` is a resolver: the count is read only when the client
/// selects it, by the page's own statement when the page has a row).
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct CountryConnection {
    /// The countries.
    pub nodes: Vec<Country>,
    /// Paging.
    pub page_info: PageInfo,
    /// The count read with the page, if it was.
    #[graphql(skip)]
    pub total_count: Option<i64>,
}

/// A page of projects.
#[derive(SimpleObject, Clone)]
pub struct ProjectConnection {
    /// The projects.
    pub nodes: Vec<Project>,
    /// Paging.
    pub page_info: PageInfo,
}

/// Country list orders.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum CountryOrder {
    /// By ISO code.
    Code,
    /// By GDP, largest first.
    GdpDesc,
}
