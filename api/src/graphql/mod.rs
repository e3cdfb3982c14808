//! The GraphQL schema (DESIGN section 7). Queries read the projections; mutations go
//! through the command side, gated by role; the subscription follows the event stream.

pub mod errors;
pub mod mutation;
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

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 10;
/// Most complex query accepted.
pub const MAX_COMPLEXITY: usize = 2000;

/// Builds the schema over the read-model pool, the event feed, the rate limits and, when
/// this process accepts commands, the command side.
pub fn schema(
    pool: PgPool,
    feed: subscription::EventFeed,
    limits: Arc<crate::limits::RateLimits>,
    side: Option<Arc<CommandSide>>,
) -> CovenantSchema {
    let mut b = Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
        .data(pool)
        .data(feed)
        .data(limits)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if let Some(s) = side {
        b = b.data(s);
    }
    b.finish()
}
