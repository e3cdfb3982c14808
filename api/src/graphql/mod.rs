//! The GraphQL schema (DESIGN section 7). Queries read the projections; mutations go
//! through the command side, gated by role; the subscription follows the event stream.

pub mod errors;
pub mod mutation;
pub mod personal;
pub mod query;
pub mod results;
pub mod subscription;
pub mod types;

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use async_graphql::parser::types::{BaseType, ExecutableDocument, TypeSystemDefinition};
use async_graphql::{Schema, ServerError, ServerResult};
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
        .data(query::SqlDurations::default())
        // The guard bounds every document first (nesting, fragment expansion, ordinary
        // depth 10); async-graphql's depth limit then counts introspection too, so it is
        // set to introspection's bound.
        .limit_depth(crate::guard::BOUNDS.max_introspection_depth)
        .limit_complexity(MAX_COMPLEXITY);
    if parsing == Parsing::Guarded {
        b = b.extension(crate::guard::Guard(crate::guard::BOUNDS, check_variable_types));
    }
    // The type names come from a schema of their own: made here, at start-up, rather than
    // on the first request that declares a variable.
    LazyLock::force(&TYPE_NAMES);
    if let Some(s) = side {
        b = b.data(s);
    }
    b.finish()
}

/// The names of the schema's types (from its SDL), the built-in scalars and the
/// introspection types: every type a variable may name.
static TYPE_NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let sdl = Schema::build(query::Query, mutation::Mutation, subscription::Subscription).finish().sdl();
    let doc = async_graphql::parser::parse_schema(&sdl).expect("the schema's own SDL parses");
    let builtin = ["Int", "Float", "String", "Boolean", "ID"];
    let introspection = [
        "__Schema",
        "__Type",
        "__TypeKind",
        "__Field",
        "__InputValue",
        "__EnumValue",
        "__Directive",
        "__DirectiveLocation",
    ];
    let defined = doc.definitions.into_iter().filter_map(|d| match d {
        TypeSystemDefinition::Type(t) => Some(t.node.name.node.to_string()),
        _ => None,
    });
    builtin.into_iter().chain(introspection).map(str::to_owned).chain(defined).collect()
});

/// Refuses a variable whose type names no type of the schema (`Unknown type "X"`,
/// `BAD_USER_INPUT`), before async-graphql validates the document: its check of a default
/// value panics on such a type inside a list (`$v: [Nope] = [1]`, async-graphql 7.2.1,
/// `validation/utils.rs`), where a bare name is reported as unknown.
///
/// # Errors
/// The first variable of an unknown type.
pub fn check_variable_types(doc: &ExecutableDocument) -> ServerResult<()> {
    for (_, op) in doc.operations.iter() {
        for v in &op.node.variable_definitions {
            let mut ty = &v.node.var_type.node;
            let name = loop {
                match &ty.base {
                    BaseType::Named(name) => break name,
                    BaseType::List(inner) => ty = inner,
                }
            };
            if !TYPE_NAMES.contains(name.as_str()) {
                let mut e = ServerError::new(format!(r#"Unknown type "{name}""#), Some(v.pos));
                let mut ext = async_graphql::ErrorExtensionValues::default();
                ext.set("code", crate::error::Code::BadUserInput.as_str());
                e.extensions = Some(ext);
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str) -> Result<(), String> {
        check_variable_types(&async_graphql::parser::parse_query(q).expect("parses")).map_err(|e| e.message)
    }

    #[test]
    fn variables_of_unknown_types_are_refused_at_any_list_depth() {
        for ok in [
            "query($c: String!, $n: Int = 3, $o: CountryOrder) { __typename }",
            "query($u: Usd!, $ids: [[ID!]] = [[\"a\"]], $k: __TypeKind) { __typename }",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (bad, name) in [
            ("query($v: Nope) { __typename }", "Nope"),
            ("query($v: [Nope] = [1]) { __typename }", "Nope"),
            ("query($a: Int, $v: [[Nope!]!] = 1) { __typename }", "Nope"),
            ("query($v: [countries]) { __typename }", "countries"),
        ] {
            assert_eq!(check(bad), Err(format!(r#"Unknown type "{name}""#)), "{bad}");
        }
    }
}
