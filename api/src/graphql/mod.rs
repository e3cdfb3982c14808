//! The GraphQL schema (DESIGN section 7). Queries read the projections; mutations go
//! through the command side, gated by role. Subscriptions arrive with the rest of the API
//! issue.

pub mod errors;
pub mod mutation;
pub mod query;
pub mod results;
pub mod types;

use std::sync::Arc;

use async_graphql::{EmptySubscription, Schema};
use covenant_commands::CommandSide;
use sqlx::PgPool;

/// The schema type.
pub type CovenantSchema = Schema<query::Query, mutation::Mutation, EmptySubscription>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 10;
/// Most complex query accepted.
pub const MAX_COMPLEXITY: usize = 2000;

/// Builds the schema over the read-model pool and, when this process accepts commands,
/// the command side.
pub fn schema(pool: PgPool, side: Option<Arc<CommandSide>>) -> CovenantSchema {
    let mut b = Schema::build(query::Query, mutation::Mutation, EmptySubscription)
        .data(pool)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if let Some(s) = side {
        b = b.data(s);
    }
    b.finish()
}
