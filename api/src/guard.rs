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
//! [`Guard`] is the async-graphql extension that applies both to every request, over
//! HTTP and over WebSocket, and replaces the parse step, so a document is parsed once.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet, VariableDefinition};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};
use async_graphql_value::{ConstValue, Value};

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

/// What one selection set costs once its fragments are expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    fields: u64,
    depth: usize,
}

/// Measures selection sets, each fragment once.
struct Walk<'a> {
    doc: &'a ExecutableDocument,
    done: HashMap<&'a str, Cost>,
    active: Vec<&'a str>,
    /// Fragments whose root fields were already listed.
    listed: Vec<&'a str>,
    /// Selection sets visited (linear in the document; the tests read it).
    visits: usize,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, level: usize) -> Result<Cost, Refusal> {
        self.visits += 1;
        if level > MAX_WALK {
            return Err(Refusal::TooDeep { depth: level, max: MAX_WALK, what: " (fragments included)" });
        }
        let mut cost = Cost::default();
        for item in &set.items {
            let inner = match &item.node {
                Selection::Field(f) => {
                    let sub = self.selection_set(&f.node.selection_set.node, level + 1)?;
                    Cost { fields: sub.fields.saturating_add(1), depth: sub.depth + 1 }
                }
                Selection::InlineFragment(f) => self.selection_set(&f.node.selection_set.node, level + 1)?,
                Selection::FragmentSpread(s) => self.fragment(s.node.fragment_name.node.as_str(), level + 1)?,
            };
            cost.fields = cost.fields.saturating_add(inner.fields);
            cost.depth = cost.depth.max(inner.depth);
        }
        Ok(cost)
    }

    fn fragment(&mut self, name: &'a str, level: usize) -> Result<Cost, Refusal> {
        if let Some(c) = self.done.get(name) {
            return Ok(*c);
        }
        if self.active.contains(&name) {
            return Err(Refusal::FragmentCycle(name.to_owned()));
        }
        // An unknown fragment costs nothing here; validation reports it.
        let Some(def) = self.doc.fragments.get(name) else { return Ok(Cost::default()) };
        self.active.push(name);
        let cost = self.selection_set(&def.node.selection_set.node, level)?;
        self.active.pop();
        self.done.insert(name, cost);
        Ok(cost)
    }

    /// The root selection's fields, spreads and inline fragments flattened, each with
    /// the walk level it stands at; a fragment spread twice is listed once (depth is a
    /// maximum, so a repeat adds nothing).
    fn root_fields(
        &mut self,
        set: &'a SelectionSet,
        level: usize,
        out: &mut Vec<(&'a Positioned<async_graphql::parser::types::Field>, usize)>,
    ) -> Result<(), Refusal> {
        self.visits += 1;
        if level > MAX_WALK {
            return Err(Refusal::TooDeep { depth: level, max: MAX_WALK, what: " (fragments included)" });
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => out.push((f, level)),
                Selection::InlineFragment(f) => self.root_fields(&f.node.selection_set.node, level + 1, out)?,
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    if self.active.contains(&name) {
                        return Err(Refusal::FragmentCycle(name.to_owned()));
                    }
                    if self.listed.contains(&name) {
                        continue;
                    }
                    self.listed.push(name);
                    if let Some(def) = self.doc.fragments.get(name) {
                        self.active.push(name);
                        self.root_fields(&def.node.selection_set.node, level + 1, out)?;
                        self.active.pop();
                    }
                }
            }
        }
        Ok(())
    }
}

/// Step 2: the parsed document's counts, fragment expansion, depth and strings, and the
/// request's variables' strings.
///
/// # Errors
/// The first bound the document goes over.
pub fn check_document(doc: &ExecutableDocument, variables: &Variables, bounds: &Bounds) -> Result<(), Refusal> {
    check_document_counting(doc, variables, bounds, &mut 0)
}

/// [`check_document`], adding the selection sets it visited to `visits`.
fn check_document_counting(
    doc: &ExecutableDocument,
    variables: &Variables,
    bounds: &Bounds,
    visits: &mut usize,
) -> Result<(), Refusal> {
    let operations: Vec<_> = doc.operations.iter().map(|(_, op)| op).collect();
    count("operations", operations.len(), bounds.max_operations)?;
    count("fragments", doc.fragments.len(), bounds.max_fragments)?;
    let variable_defs: Vec<&Positioned<VariableDefinition>> =
        operations.iter().flat_map(|op| op.node.variable_definitions.iter()).collect();
    count("variable definitions", variable_defs.len(), bounds.max_variables)?;

    let mut walk = Walk { doc, done: HashMap::new(), active: Vec::new(), listed: Vec::new(), visits: 0 };
    let measured = (|| {
        for name in doc.fragments.keys() {
            walk.fragment(name.as_str(), 0)?;
        }
        let mut total_fields = 0u64;
        for op in &operations {
            let cost = walk.selection_set(&op.node.selection_set.node, 0)?;
            total_fields = total_fields.saturating_add(cost.fields);
            walk.listed.clear();
            let mut roots = Vec::new();
            walk.root_fields(&op.node.selection_set.node, 0, &mut roots)?;
            check_depths(&mut walk, roots, bounds)?;
        }
        Ok(total_fields)
    })();
    *visits += walk.visits;
    let mut total_fields = measured?;
    for cost in walk.done.values() {
        total_fields = total_fields.max(cost.fields);
    }
    if total_fields > bounds.max_fields {
        return Err(Refusal::TooManyFields { fields: total_fields, max: bounds.max_fields });
    }
    check_strings(doc, &operations, &variable_defs, variables, bounds)
}

/// Each root field's depth against its bound (introspection's or the ordinary one).
fn check_depths<'a>(
    walk: &mut Walk<'a>,
    roots: Vec<(&'a Positioned<async_graphql::parser::types::Field>, usize)>,
    bounds: &Bounds,
) -> Result<(), Refusal> {
    for (field, level) in roots {
        let sub = walk.selection_set(&field.node.selection_set.node, level + 1)?;
        let depth = sub.depth + 1;
        let introspection = matches!(field.node.name.node.as_str(), "__schema" | "__type");
        let (max, what) =
            if introspection { (bounds.max_introspection_depth, " (introspection)") } else { (bounds.max_depth, "") };
        if depth > max {
            return Err(Refusal::TooDeep { depth, max, what });
        }
    }
    Ok(())
}

/// No U+0000 in any string of the document or the variables, and the directive count.
fn check_strings(
    doc: &ExecutableDocument,
    operations: &[&Positioned<async_graphql::parser::types::OperationDefinition>],
    variable_defs: &[&Positioned<VariableDefinition>],
    variables: &Variables,
    bounds: &Bounds,
) -> Result<(), Refusal> {
    let mut directives = 0usize;
    let mut strings = Strings { directives: &mut directives };
    for op in operations {
        strings.directives(&op.node.directives)?;
        strings.selection_set(&op.node.selection_set.node)?;
    }
    for def in variable_defs {
        strings.directives(&def.node.directives)?;
        if let Some(v) = &def.node.default_value {
            const_value(&v.node)?;
        }
    }
    for def in doc.fragments.values() {
        strings.directives(&def.node.directives)?;
        strings.selection_set(&def.node.selection_set.node)?;
    }
    count("directives", directives, bounds.max_directives)?;
    for (name, value) in variables.iter() {
        nul_free(name.as_str())?;
        const_value(value)?;
    }
    Ok(())
}

/// Walks every argument and directive (the text's nesting bounds the recursion) looking
/// for U+0000, counting directives on the way.
struct Strings<'c> {
    directives: &'c mut usize,
}

impl Strings<'_> {
    fn selection_set(&mut self, set: &SelectionSet) -> Result<(), Refusal> {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    for (_, v) in &f.node.arguments {
                        value(&v.node)?;
                    }
                    self.directives(&f.node.directives)?;
                    self.selection_set(&f.node.selection_set.node)?;
                }
                Selection::InlineFragment(f) => {
                    self.directives(&f.node.directives)?;
                    self.selection_set(&f.node.selection_set.node)?;
                }
                Selection::FragmentSpread(s) => self.directives(&s.node.directives)?,
            }
        }
        Ok(())
    }

    fn directives(&mut self, list: &[Positioned<Directive>]) -> Result<(), Refusal> {
        *self.directives += list.len();
        for d in list {
            for (_, v) in &d.node.arguments {
                value(&v.node)?;
            }
        }
        Ok(())
    }
}

fn nul_free(s: &str) -> Result<(), Refusal> {
    if s.contains('\0') { Err(Refusal::Nul) } else { Ok(()) }
}

fn value(v: &Value) -> Result<(), Refusal> {
    match v {
        Value::String(s) => nul_free(s),
        Value::List(items) => items.iter().try_for_each(value),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| nul_free(k.as_str()).and_then(|()| value(v))),
        _ => Ok(()),
    }
}

fn const_value(v: &ConstValue) -> Result<(), Refusal> {
    use ConstValue as C;
    match v {
        C::String(s) => nul_free(s),
        C::List(items) => items.iter().try_for_each(const_value),
        C::Object(map) => {
            map.iter().try_for_each(|(k, v): (&Name, _)| nul_free(k.as_str()).and_then(|()| const_value(v)))
        }
        _ => Ok(()),
    }
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
    let doc = async_graphql::parser::parse_query(query).map_err(|e| bad_input(ServerError::from(e)))?;
    check_document(&doc, variables, bounds).map_err(Refusal::into_server_error)?;
    Ok(doc)
}

/// The async-graphql extension that parses every document through [`parse_checked`].
pub struct Guard(pub Bounds);

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension(self.0))
    }
}

struct GuardExtension(Bounds);

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
        if query.len() <= PARSE_INLINE_BYTES {
            return parse_checked(query, variables, &self.0);
        }
        // A long document is parsed on the blocking pool, so a burst of them cannot hold
        // every async worker while small requests wait.
        let (query, variables, bounds) = (query.to_owned(), variables.clone(), self.0);
        tokio::task::spawn_blocking(move || parse_checked(&query, &variables, &bounds)).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "parsing a document failed on the blocking pool");
            let mut err = ServerError::new("internal error", None);
            let mut ext = async_graphql::ErrorExtensionValues::default();
            ext.set("code", crate::error::Code::Internal.as_str());
            err.extensions = Some(ext);
            Err(err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str) -> Result<(), Refusal> {
        check_text(q, &BOUNDS)?;
        let doc = async_graphql::parser::parse_query(q).expect("parses");
        check_document(&doc, &Variables::default(), &BOUNDS)
    }

    #[test]
    fn ordinary_queries_pass() {
        check("{ countries { code name gdpUsd } }").expect("plain");
        check("query Q($c: String) { projects(countryCode: $c) { id name } } fragment F on Query { __typename }")
            .expect("with a fragment");
        check("{ a { b { c { d { e { f { g { h { i { j } } } } } } } } } }").expect("depth 10");
    }

    #[test]
    fn deep_nesting_of_every_construct_is_refused_before_parsing() {
        let n = 5000;
        let cases = [
            format!("{}{}", "{a".repeat(n), "}".repeat(n)),
            format!("{{ a(x: {}1{}) }}", "[".repeat(n), "]".repeat(n)),
            format!("{{ a(x: {}1{}) }}", "{b: ".repeat(n), "}".repeat(n)),
            format!("query($v: {}Int{} = 1) {{ a }}", "[".repeat(n), "]".repeat(n)),
            format!("query($v: Int = {}1{}) {{ a }}", "[".repeat(n), "]".repeat(n)),
            format!("{{ a @d(x: {}1{}) }}", "[".repeat(n), "]".repeat(n)),
        ];
        for q in cases {
            assert!(matches!(check_text(&q, &BOUNDS), Err(Refusal::TooNested { max: 32, .. })), "{}", &q[..40]);
        }
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let q = format!(
            "{{ a(x: \"{}\", y: \"\"\"{}\\\"\"\" {} \"\"\") # {}\n }}",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100),
            "[".repeat(100)
        );
        check_text(&q, &BOUNDS).expect("strings and comments hold no nesting");
        // A quote inside a comment does not open a string that would hide brackets.
        let hidden = format!("{{ a # \"\n {}1{} }}", "[".repeat(40), "]".repeat(40));
        assert!(check_text(&hidden, &BOUNDS).is_err());
        // A string ends at its line's end, as the grammar says.
        let unterminated = format!("{{ a(x: \"open\n {}1{}) }}", "[".repeat(40), "]".repeat(40));
        assert!(check_text(&unterminated, &BOUNDS).is_err());
    }

    #[test]
    fn fragment_expansion_is_measured_once_per_fragment() {
        let mut q = String::from("query { ...F0 }\nfragment F0 on Query { __typename }\n");
        for i in 1..=24 {
            q.push_str(&format!("fragment F{i} on Query {{ ...F{} ...F{} }}\n", i - 1, i - 1));
        }
        q = q.replacen("...F0 }", "...F24 }", 1);
        let doc = async_graphql::parser::parse_query(&q).expect("parses");
        let mut visits = 0;
        let err = check_document_counting(&doc, &Variables::default(), &BOUNDS, &mut visits).expect_err("refused");
        assert!(matches!(err, Refusal::TooManyFields { fields, .. } if fields == 1 << 24), "{err:?}");
        assert!(visits < 100, "{visits} selection sets visited for 25 fragments: each is measured once");
    }

    #[test]
    fn fragment_cycles_are_refused() {
        let err = check("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").expect_err("cycle");
        assert!(matches!(err, Refusal::FragmentCycle(_)), "{err:?}");
        let err = check("{ ...A } fragment A on Query { a { ...A } }").expect_err("cycle under a field");
        assert!(matches!(err, Refusal::FragmentCycle(_)), "{err:?}");
    }

    #[test]
    fn depth_counts_through_fragments_and_introspection_has_its_own_bound() {
        let err = check("{ a { ...F } } fragment F on T { b { c { d { e { f { g { h { i { j { k } } } } } } } } } }")
            .expect_err("depth 11 through a fragment");
        assert!(matches!(err, Refusal::TooDeep { depth: 11, max: 10, what: "" }), "{err:?}");
        let deep_type_ref = format!(
            "{{ __schema {{ types {{ fields {{ type {}kind{} }} }} }} }}",
            "{ ofType ".repeat(10),
            " }".repeat(10)
        );
        check(&deep_type_ref).expect("introspection 14 levels deep");
        let too_deep = format!("{{ __type(name: \"X\") {}kind{} }}", "{ ofType ".repeat(16), " }".repeat(16));
        assert!(matches!(check(&too_deep), Err(Refusal::TooDeep { max: 16, what: " (introspection)", .. })));
    }

    #[test]
    fn nul_anywhere_in_strings_is_refused() {
        for q in [
            r#"{ projects(countryCode: "\u0000") { id } }"#,
            r#"{ a(x: ["ok", {k: "\u0000"}]) }"#,
            r#"{ a @include(if: true) @d(x: "a\u0000b") }"#,
            r#"query($v: String = "\u0000") { a }"#,
        ] {
            assert_eq!(check(q), Err(Refusal::Nul), "{q}");
        }
        let doc = async_graphql::parser::parse_query("query($v: String) { a(x: $v) }").expect("parses");
        let vars = Variables::from_json(serde_json::json!({ "v": { "deep": ["x\u{0}"] } }));
        assert_eq!(check_document(&doc, &vars, &BOUNDS), Err(Refusal::Nul));
    }

    #[test]
    fn counts_are_bounded() {
        let many_fields = format!("{{ {} }}", (0..1001).map(|i| format!("a{i}: x")).collect::<Vec<_>>().join(" "));
        assert!(matches!(check(&many_fields), Err(Refusal::TooManyFields { fields: 1001, .. })));
        let many_directives = format!("{{ a {} }}", "@skip(if: false) ".repeat(51));
        assert!(matches!(check(&many_directives), Err(Refusal::TooMany { what: "directives", .. })));
        let vars = (0..51).map(|i| format!("$v{i}: Int")).collect::<Vec<_>>().join(", ");
        assert!(matches!(
            check(&format!("query({vars}) {{ a }}")),
            Err(Refusal::TooMany { what: "variable definitions", .. })
        ));
        let long = format!("{{ a }}{}", " ".repeat(BOUNDS.max_query_bytes));
        assert!(matches!(check_text(&long, &BOUNDS), Err(Refusal::TooLong { .. })));
    }

    /// The guard's fuzz target: proptest drives it with generated documents (cargo test
    /// runs it with the rest; `PROPTEST_CASES=100000 cargo test -p covenant-api guard`
    /// runs it longer).
    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        /// One level of nesting, as the generator writes it.
        #[derive(Debug, Clone, Copy)]
        enum Level {
            Selection,
            InlineFragment,
            Arguments,
            DirectiveArguments,
            List,
            Object,
        }

        fn level() -> impl Strategy<Value = Level> {
            prop_oneof![
                Just(Level::Selection),
                Just(Level::InlineFragment),
                Just(Level::Arguments),
                Just(Level::DirectiveArguments),
                Just(Level::List),
                Just(Level::Object),
            ]
        }

        /// A syntactically valid document nesting `levels` (each one bracket deep) inside
        /// an operation, or inside a variable's default value; returns it and its bracket
        /// depth.
        fn render(levels: &[Level], in_default: bool) -> (String, usize) {
            let (mut open, mut close) = (String::new(), Vec::new());
            let mut in_value = in_default;
            for l in levels {
                let (o, c, value) = match (in_value, l) {
                    (false, Level::Selection) => ("f { ", " }", false),
                    (false, Level::InlineFragment) => ("... on Query { ", " }", false),
                    (false, Level::Arguments | Level::List | Level::Object) => ("f(x: ", ")", true),
                    (false, Level::DirectiveArguments) => ("f @include(if: ", ")", true),
                    (true, Level::Object) => ("{a: ", "}", true),
                    (true, _) => ("[", "]", true),
                };
                open.push_str(o);
                close.push(c);
                in_value = value;
            }
            let leaf = if in_value { "1" } else { "__typename" };
            close.reverse();
            let inner = format!("{open}{leaf}{}", close.concat());
            if in_default {
                (format!("query($v: [Int] = {inner}) {{ __typename }}"), levels.len() + 1)
            } else {
                (format!("{{ {inner} }}"), levels.len() + 1)
            }
        }

        /// Pieces that make lexing hard: brackets, quotes, escapes, block strings, comments
        /// and line ends in every order.
        const PIECES: &[&str] = &[
            "{",
            "[",
            "(",
            "}",
            "]",
            ")",
            "\"",
            "\"\"\"",
            "\\",
            "\\\"",
            "\\\"\"\"",
            "\n",
            "\r",
            "#",
            "a",
            " ",
            "x: ",
            "... on Q ",
            "...F ",
            "$v",
            "@d",
            ",",
            "fragment F on Q ",
            "query($v: Int = ",
            "\u{0}",
            "é",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Nesting of any mix of constructs is refused exactly when it goes over the
            /// bound, and a document within the bound parses (the guard never refuses a
            /// valid document for its nesting alone).
            #[test]
            fn nesting_of_any_construct_is_refused_exactly_above_the_bound(
                levels in prop::collection::vec(level(), 0..200),
                in_default in any::<bool>(),
            ) {
                let (doc, depth) = render(&levels, in_default);
                let result = parse_checked(&doc, &Variables::default(), &BOUNDS);
                let refused_nesting = matches!(
                    check_text(&doc, &BOUNDS),
                    Err(Refusal::TooNested { .. })
                );
                prop_assert_eq!(refused_nesting, depth > BOUNDS.max_nesting, "{}", doc);
                if depth > BOUNDS.max_nesting {
                    prop_assert!(result.is_err());
                } else {
                    prop_assert!(async_graphql::parser::parse_query(&doc).is_ok(), "{}", doc);
                }
            }

            /// Any soup of hard-to-lex pieces, up to 60 KB, is answered (refused or parsed):
            /// the guard's view of strings and comments never lets the parser recurse past
            /// what a worker's stack holds.
            #[test]
            fn any_text_is_answered_without_overflowing(
                pieces in prop::collection::vec(prop::sample::select(PIECES), 0..6000),
            ) {
                let doc: String = pieces.concat();
                let _ = parse_checked(&doc, &Variables::default(), &BOUNDS);
            }

            /// Arbitrary characters never panic the guard.
            #[test]
            fn arbitrary_characters_never_panic(chars in prop::collection::vec(any::<char>(), 0..2000)) {
                let doc: String = chars.into_iter().collect();
                let _ = parse_checked(&doc, &Variables::default(), &BOUNDS);
            }

            /// Fragment graphs of any shape (each fragment spreads earlier ones, any
            /// number of times) are measured in visits linear in the document.
            #[test]
            fn fragment_graphs_cost_visits_linear_in_the_document(
                spreads in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..4), 1..50),
            ) {
                let mut doc = String::from("{ ...F0 }\nfragment F0 on Query { __typename }\n");
                let mut size = 2;
                for (i, s) in spreads.iter().enumerate() {
                    let i = i + 1;
                    let body: String = s.iter().map(|ix| format!("...F{} ", ix.index(i))).collect();
                    size += s.len() + 1;
                    doc.push_str(&format!("fragment F{i} on Query {{ __typename {body}}}\n"));
                }
                let parsed = async_graphql::parser::parse_query(&doc).expect("parses");
                let mut visits = 0;
                let _ = check_document_counting(&parsed, &Variables::default(), &BOUNDS, &mut visits);
                prop_assert!(visits <= 4 * size + 8, "{} visits for {} selections", visits, size);
            }
        }
    }
}
