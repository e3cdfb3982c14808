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

/// A span's values of [`FIELDS`] (in that order), and which of them are the span's own
/// recorded fields (the JSON layer writes those on the span's lines itself).
#[derive(Debug, Default)]
struct RequestFields {
    values: [Option<String>; 3],
    recorded: [bool; 3],
}

impl RequestFields {
    fn set(&mut self, field: &str, value: String, recorded: bool) {
        if let Some(i) = FIELDS.iter().position(|f| *f == field) {
            self.values[i] = Some(value);
            self.recorded[i] = recorded;
        }
    }
}

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.to_owned(), true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if FIELDS.contains(&field.name()) {
            self.set(field.name(), format!("{value:?}"), true);
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

/// Writes the request's fields on a line logged in `span`: those of the nearest span that
/// has them (`span` itself or one above it), except the ones the JSON layer writes itself
/// (the recorded fields of the line's own span).
pub(super) fn write_inherited<S>(span: &SpanRef<'_, S>, out: &mut json_subscriber::FieldWriter<'_>)
where
    S: for<'a> LookupSpan<'a>,
{
    for (depth, above) in span.scope().enumerate() {
        if let Some(fields) = above.extensions().get::<RequestFields>() {
            for ((name, value), recorded) in FIELDS.iter().zip(&fields.values).zip(fields.recorded) {
                if let Some(v) = value
                    && !(depth == 0 && recorded)
                {
                    let _ = out.write_field(name, v);
                }
            }
            return;
        }
    }
}

/// Names the signed-in user on a request's `span` (one that declares `request_id`,
/// `user_id` and `role`): every line logged under it carries `user_id` and `role`, and
/// its exported span (when its trace is sampled) has them as attributes.
///
/// Not `Span::record` where the JSON logs are written: the JSON layer re-serialises all of
/// a span's fields at each record, about 6,000 instructions per signed-in request under
/// callgrind; the values go to the span's kept request fields instead. Elsewhere (the text
/// format) they are recorded.
pub fn set_user(span: &tracing::Span, user_id: &str, role: &str) {
    use crate::OpenTelemetrySpanExt as _;
    // `Some(exported)` once the values are in the span's kept request fields.
    let kept = span.with_subscriber(|(id, dispatch)| {
        let data = dispatch.downcast_ref::<tracing_subscriber::Registry>()?.span(id)?;
        let traced = crate::sampling::is_traced(&data);
        let mut extensions = data.extensions_mut();
        let fields = extensions.get_mut::<RequestFields>()?;
        fields.set("user_id", user_id.to_owned(), false);
        fields.set("role", role.to_owned(), false);
        Some(traced)
    });
    match kept.flatten() {
        Some(traced) => {
            if traced {
                span.set_attribute("user_id", user_id.to_owned());
                span.set_attribute("role", role.to_owned());
            }
        }
        None => {
            span.record("user_id", user_id);
            span.record("role", role);
        }
    }
}
