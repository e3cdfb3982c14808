//! The GraphQL schema (DESIGN section 7). Queries read the projections; mutations go
//! through the command side, gated by role; the subscription follows the event stream.

pub mod errors;
pub mod mutation;
pub mod personal;
pub mod query;
pub mod results;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::Schema;
use covenant_commands::CommandSide;
use sqlx::PgPool;

/// The schema type.
pub type CovenantSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// Deepest ordinary query accepted (introspection: [`crate::guard::Bounds::max_introspection_depth`]).
pub const MAX_DEPTH: usize = crate::guard::BOUNDS.max_depth;
/// Most complex query accepted.
pub const MAX_COMPLEXITY: usize = 2000;

/// How a schema gets its documents parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsing {
    /// The guard is the schema's parse step (an async-graphql extension): for requests
    /// that reach the schema as text, as WebSocket subscriptions do.
    Guarded,
    /// Every request arrives with a document [`crate::guard::parse_checked_async`] has
    /// already checked (`Request::set_parsed_query`), as the HTTP handler sends them. No
    /// extension is installed: with any, async-graphql resolves every field and list item
    /// through the extension chain (a `ResolveInfo` and a registry lookup each), which
    /// cost about a fifth of a GraphQL read's CPU.
    Prechecked,
}

/// Builds the schema over the read-model pool, the event feed, the rate limits, the
/// principals directory and, when this process accepts commands, the command side.
pub fn schema(
    pool: PgPool,
    feed: subscription::EventFeed,
    limits: Arc<crate::limits::RateLimits>,
    side: Option<Arc<CommandSide>>,
    principals: Arc<crate::principals::Principals>,
    parsing: Parsing,
) -> CovenantSchema {
    let mut b = Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
        .data(pool)
        .data(principals)
        .data(feed)
        .data(limits)
        // The guard bounds every document first (nesting, fragment expansion, ordinary
        // depth 10); async-graphql's depth limit then counts introspection too, so it is
        // set to introspection's bound.
        .limit_depth(crate::guard::BOUNDS.max_introspection_depth)
        .limit_complexity(MAX_COMPLEXITY);
    if parsing == Parsing::Guarded {
        b = b.extension(crate::guard::Guard(crate::guard::BOUNDS));
    }
    if let Some(s) = side {
        b = b.data(s);
    }
    b.finish()
}
