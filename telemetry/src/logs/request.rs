//! The request's fields on every line logged under it.
//!
//! The JSON layer flattens the fields of a line's own span only (its cached serialisation,
//! written as it is): flattening every enclosing span instead cloned each field into a map
//! and converted it again on every line, a third of the JSON layer's cost per request. A
//! line logged in a span inside a request (a sampled request's GraphQL, command or send
//! span) still needs the request's `request_id`, `user_id` and `role` (DESIGN section 8):
//! [`Requests`] keeps the values of those fields in the span that declares them, and
//! [`write_inherited`] writes them on the lines of the spans below it.

use std::fmt::Debug;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// The fields a request's span gives every line under it.
const FIELDS: [&str; 3] = ["request_id", "user_id", "role"];

/// A span's values of [`FIELDS`] (in that order).
#[derive(Debug, Default)]
struct RequestFields([Option<String>; 3]);

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(i) = FIELDS.iter().position(|f| *f == field.name()) {
            self.0[i] = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if let Some(i) = FIELDS.iter().position(|f| *f == field.name()) {
            self.0[i] = Some(format!("{value:?}"));
        }
    }
}

/// Keeps the [`FIELDS`] of the spans that declare any of them.
pub(super) struct Requests;

impl<S> Layer<S> for Requests
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.fields().iter().any(|f| FIELDS.contains(&f.name())) {
            return;
        }
        let mut fields = RequestFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<RequestFields>()
        {
            values.record(fields);
        }
    }
}

/// Writes the request's fields on a line logged in `span` when they come from a span above
/// it (the line's own span's fields are written already).
pub(super) fn write_inherited<S>(span: &SpanRef<'_, S>, out: &mut json_subscriber::FieldWriter<'_>)
where
    S: for<'a> LookupSpan<'a>,
{
    if span.extensions().get::<RequestFields>().is_some() {
        return;
    }
    for above in span.scope().skip(1) {
        if let Some(fields) = above.extensions().get::<RequestFields>() {
            for (name, value) in FIELDS.iter().zip(&fields.0) {
                if let Some(v) = value {
                    let _ = out.write_field(name, v);
                }
            }
            return;
        }
    }
}
