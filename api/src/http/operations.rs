//! What a request's operation is, for its span and its metrics: its type and name, and
//! the bounded set of names used as metric labels.

/// The type of the operation `doc` selects with `operation_name` (`query`, `mutation`,
/// `subscription`, or `invalid` when it names no such operation: the schema then reports
/// why) and its name (`operationName`, else the document's own name for it).
pub(super) fn operation_type(
    doc: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> (&'static str, Option<String>) {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let (op, name) = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), given) => (Some(op), given.map(str::to_owned)),
        (DocumentOperations::Multiple(ops), Some(name)) => (ops.get(name), Some(name.to_owned())),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            let (name, op) = ops.iter().next().map_or((None, None), |(n, o)| (Some(n.to_string()), Some(o)));
            (op, name)
        }
        _ => (None, None),
    };
    let kind = match op.map(|o| o.node.ty) {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => "invalid",
    };
    (kind, name)
}

/// Operation names as metric labels: client-chosen, so only well-formed names, and only
/// the first [`OperationLabels::MAX`] distinct ones (later ones are `other`), keeping the
/// series count bounded.
#[derive(Default)]
pub struct OperationLabels {
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl OperationLabels {
    /// Most distinct operation names labelled.
    pub const MAX: usize = 200;

    /// The label for `name`.
    pub fn label(&self, name: Option<&str>) -> String {
        let Some(name) = name else { return "anonymous".into() };
        let well_formed = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return "other".into();
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(name) || seen.len() < Self::MAX {
            seen.insert(name.to_owned());
            name.to_owned()
        } else {
            "other".into()
        }
    }
}
