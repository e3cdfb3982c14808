//! Step 2 of the guard, on the parsed document: counts, fragment cycles, fields and depth
//! with every fragment measured once, and strings free of U+0000.

use super::*;

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
pub(super) fn check_document_counting(
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
