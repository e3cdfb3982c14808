//! The request guard: what a GraphQL document may cost is bounded before the parser,
//! validation or execution spend anything on it.
//!
//! Why a guard in front of async-graphql: its parser recurses once per nesting level of
//! every construct (selection sets, list and object values, variable types), so about a
//! thousand nested brackets overflow a worker's stack and abort the whole process; and its
//! own checks (recursion depth, depth, complexity) walk fragment spreads without
//! memoising them, so a 1 KB document whose fragments each spread the previous one twice
//! costs 2^24 visits before any limit answers. The guard runs in two steps, each linear in
//! the document:
//!
//! 1. [`check_text`], on the raw text before any parse: its size and how deeply brackets
//!    (`{`, `[`, `(`) nest outside strings and comments. Every recursive rule of the
//!    GraphQL grammar goes through one of them, so this bounds the parser's recursion.
//! 2. [`check_document`], on the parsed document before validation: counts of operations,
//!    fragments, variables and directives; fragment cycles; the number of fields and the
//!    depth once fragments are expanded (each fragment is measured once); and no string
//!    holding U+0000, which PostgreSQL cannot store.
//!
//! Introspection (`__schema`, `__type`) has its own depth bound: the standard query
//! GraphiQL and code generators send nests `ofType` eight levels deep.
//!
//! Both apply to every request: the HTTP handler runs [`parse_checked_async`] and hands
//! the schema the checked document; over WebSocket, [`Guard`], an async-graphql extension,
//! replaces the schema's parse step. A document is parsed once (and a short one seen
//! before is not parsed again: see `DOCUMENTS`).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet, VariableDefinition};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};
use async_graphql_value::{ConstValue, Value};

mod document;
pub use document::check_document;
#[cfg(test)]
use document::check_document_counting;

/// The bounds the guard enforces (documented in the README's "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    /// Deepest bracket nesting in the text (selections, lists, objects, arguments).
    pub max_nesting: usize,
    /// Deepest field nesting of an ordinary operation, fragments expanded.
    pub max_depth: usize,
    /// Deepest field nesting under `__schema` or `__type`.
    pub max_introspection_depth: usize,
    /// Most fields one operation selects once its fragments are expanded.
    pub max_fields: u64,
    /// Most operations in one document.
    pub max_operations: usize,
    /// Most fragment definitions in one document.
    pub max_fragments: usize,
    /// Most variable definitions in one document.
    pub max_variables: usize,
    /// Most directives in one document.
    pub max_directives: usize,
}

/// The service's bounds.
pub const BOUNDS: Bounds = Bounds {
    max_query_bytes: 64 * 1024,
    max_nesting: 32,
    max_depth: 10,
    max_introspection_depth: 16,
    max_fields: 1000,
    max_operations: 20,
    max_fragments: 50,
    max_variables: 50,
    max_directives: 50,
};

/// How many selection sets (fields, spreads, inline fragments) the document walk may be
/// inside at once: far above what any document within [`Bounds::max_depth`] reaches, and
/// far below what would strain a worker's stack.
const MAX_WALK: usize = 128;

/// Documents up to this long are parsed on the request's own task (a few hundred
/// microseconds at most); longer ones go to the blocking pool.
const PARSE_INLINE_BYTES: usize = 8 * 1024;

/// Why a document is refused; every refusal is the client's (`BAD_USER_INPUT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The query text is too long.
    #[error("the query is {size} bytes long; at most {max} are accepted")]
    TooLong {
        /// Its length.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// Brackets nest too deeply.
    #[error("the query nests brackets more than {max} levels deep (line {line})")]
    TooNested {
        /// The bound.
        max: usize,
        /// Where it went over.
        line: usize,
    },
    /// Fields nest too deeply.
    #[error("the query is nested too deep: {depth} levels of fields where at most {max} are accepted{what}")]
    TooDeep {
        /// Its depth (at least this).
        depth: usize,
        /// The bound.
        max: usize,
        /// `" (introspection)"` or empty.
        what: &'static str,
    },
    /// Too many fields once fragments are expanded.
    #[error("the query selects {fields} fields once its fragments are expanded; at most {max} are accepted")]
    TooManyFields {
        /// How many (saturating).
        fields: u64,
        /// The bound.
        max: u64,
    },
    /// Too many of one kind of definition.
    #[error("the document has {count} {what}; at most {max} are accepted")]
    TooMany {
        /// What.
        what: &'static str,
        /// How many.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A fragment spreads itself, directly or through others.
    #[error("fragment `{0}` spreads itself")]
    FragmentCycle(String),
    /// A string holds U+0000.
    #[error("strings may not contain the NUL character (U+0000)")]
    Nul,
}

impl Refusal {
    /// As a GraphQL error with `extensions.code = BAD_USER_INPUT`.
    #[must_use]
    pub fn into_server_error(self) -> ServerError {
        bad_input(ServerError::new(self.to_string(), None))
    }
}

/// Step 1: the text's length and bracket nesting, outside strings, block strings and
/// comments (as the GraphQL grammar reads them: a string ends at its closing quote or at
/// the end of its line).
///
/// # Errors
/// [`Refusal::TooLong`] or [`Refusal::TooNested`].
pub fn check_text(query: &str, bounds: &Bounds) -> Result<(), Refusal> {
    if query.len() > bounds.max_query_bytes {
        return Err(Refusal::TooLong { size: query.len(), max: bounds.max_query_bytes });
    }
    let bytes = query.as_bytes();
    let (mut i, mut depth, mut line) = (0, 0usize, 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => line += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    if bytes[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                        continue;
                    }
                    line += usize::from(bytes[i] == b'\n');
                    i += 1;
                }
                i += 3;
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > bounds.max_nesting {
                    return Err(Refusal::TooNested { max: bounds.max_nesting, line });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `e` with `extensions.code = BAD_USER_INPUT`.
fn bad_input(mut e: ServerError) -> ServerError {
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", crate::error::Code::BadUserInput.as_str());
    e.extensions = Some(ext);
    e
}

/// `Err(TooMany)` when `count` of `what` is over `max`.
fn count(what: &'static str, count: usize, max: usize) -> Result<(), Refusal> {
    if count > max { Err(Refusal::TooMany { what, count, max }) } else { Ok(()) }
}

/// Both steps and the parse between them.
///
/// # Errors
/// The refusal, or the parser's own error (a syntax error).
pub fn parse_checked(query: &str, variables: &Variables, bounds: &Bounds) -> ServerResult<ExecutableDocument> {
    check_text(query, bounds).map_err(Refusal::into_server_error)?;
    let doc = parse(query)?;
    check_document(&doc, variables, bounds).map_err(Refusal::into_server_error)?;
    Ok(doc)
}

/// What the parsed documents [`DOCUMENTS`] keeps may take in memory, as [`TextLength`]
/// estimates it.
const DOCUMENT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// A parsed document takes up to about a hundred times its text: measured with a counting
/// allocator, 35x for 50 variable definitions, 44x for a one-line query, 80x for a list of
/// objects and 106x for a thousand fields one letter each (the densest text there is, two
/// bytes a field). A document is weighed at this many bytes for each byte of its text, so
/// that a client sending dense documents cannot make the cache hold more than its bound.
const PARSED_BYTES_PER_TEXT_BYTE: u64 = 128;

/// Documents parsed before, by their text. Clients send the same few documents again and
/// again, with other variables; async-graphql's parser takes 22–29 µs for each of the
/// benchmark's one-line documents where a copy of the parsed form takes 0.4–0.5 µs (a
/// release build on the 2-core benchmark machine). Only what depends on the text alone is
/// kept: both checks still run on every request, since their bounds and the variables vary.
/// Documents longer than [`PARSE_INLINE_BYTES`] and those that do not parse are not kept.
/// At [`DOCUMENT_CACHE_BYTES`] this holds 256 KiB of text: a thousand documents of 250 bytes.
static DOCUMENTS: std::sync::LazyLock<quick_cache::sync::Cache<String, Arc<ExecutableDocument>, TextLength>> =
    std::sync::LazyLock::new(|| quick_cache::sync::Cache::with_weighter(1024, DOCUMENT_CACHE_BYTES, TextLength));

/// Weighs a cached document by its text, as [`PARSED_BYTES_PER_TEXT_BYTE`] says.
#[derive(Clone)]
struct TextLength;

impl quick_cache::Weighter<String, Arc<ExecutableDocument>> for TextLength {
    fn weight(&self, text: &String, _: &Arc<ExecutableDocument>) -> u64 {
        (text.len() as u64 + 1) * PARSED_BYTES_PER_TEXT_BYTE
    }
}

/// `query` parsed, from [`DOCUMENTS`] when it was parsed before. Counted in
/// `covenant_graphql_document_cache_total{result="hit"|"miss"}`: a low share of hits means
/// clients write values into their documents instead of passing variables.
fn parse(query: &str) -> ServerResult<ExecutableDocument> {
    if let Some(doc) = DOCUMENTS.get(query) {
        metrics::counter!("covenant_graphql_document_cache_total", "result" => "hit").increment(1);
        return Ok(ExecutableDocument::clone(&doc));
    }
    metrics::counter!("covenant_graphql_document_cache_total", "result" => "miss").increment(1);
    let doc = async_graphql::parser::parse_query(query).map_err(|e| bad_input(ServerError::from(e)))?;
    if query.len() <= PARSE_INLINE_BYTES {
        DOCUMENTS.insert(query.to_owned(), Arc::new(doc.clone()));
    }
    Ok(doc)
}

/// [`parse_checked`] where it belongs: a short document on the caller's task, a long one
/// on the blocking pool, so a burst of long documents cannot hold every async worker while
/// small requests wait.
///
/// # Errors
/// As [`parse_checked`]; `INTERNAL` if the blocking pool lost the task.
pub async fn parse_checked_async(
    query: &str,
    variables: &Variables,
    bounds: Bounds,
) -> ServerResult<ExecutableDocument> {
    if query.len() <= PARSE_INLINE_BYTES {
        return parse_checked(query, variables, &bounds);
    }
    let (query, variables) = (query.to_owned(), variables.clone());
    tokio::task::spawn_blocking(move || parse_checked(&query, &variables, &bounds)).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "parsing a document failed on the blocking pool");
        let mut err = ServerError::new("internal error", None);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", crate::error::Code::Internal.as_str());
        err.extensions = Some(ext);
        Err(err)
    })
}

/// The async-graphql extension that parses every document through [`parse_checked`]:
/// the parse step of the WebSocket schema ([`crate::graphql::Parsing::Guarded`]). The
/// HTTP handler calls [`parse_checked_async`] itself and hands the schema the document.
/// The function runs on each document the guard accepted: the schema's own check
/// (`crate::graphql::check_variable_types`), which the guard does not know.
pub struct Guard(pub Bounds, pub fn(&ExecutableDocument) -> ServerResult<()>);

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension(self.0, self.1))
    }
}

struct GuardExtension(Bounds, fn(&ExecutableDocument) -> ServerResult<()>);

#[async_trait::async_trait]
impl Extension for GuardExtension {
    /// Replaces the parse step (`next` is not called): async-graphql's own post-parse
    /// checks walk spreads without memoising them, which is what the guard prevents.
    async fn parse_query(
        &self,
        _ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = parse_checked_async(query, variables, self.0).await?;
        (self.1)(&doc)?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests;
