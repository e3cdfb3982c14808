//! The GraphQL schema (DESIGN section 7). Queries read the projections; mutations,
//! subscriptions and auth arrive with the rest of the API issue.

pub mod query;
pub mod types;

use async_graphql::{EmptyMutation, EmptySubscription, Schema};
use sqlx::PgPool;

/// The schema type.
pub type CovenantSchema = Schema<query::Query, EmptyMutation, EmptySubscription>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 10;
/// Most complex query accepted.
pub const MAX_COMPLEXITY: usize = 2000;

/// Builds the schema over the read-model pool.
pub fn schema(pool: PgPool) -> CovenantSchema {
    Schema::build(query::Query, EmptyMutation, EmptySubscription)
        .data(pool)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}
