//! The subscription root: the live event feed, read from JetStream (not from a read model),
//! so a subscriber sees every event in stream order as soon as it is stored.

use async_graphql::{Context, Subscription};
use async_nats::jetstream::{self, consumer};
use covenant_projections::event::ProjectedEvent;
use futures::StreamExt as _;
use futures::stream::BoxStream;

use super::errors::err;
use super::types::AuditEvent;
use crate::error::ApiResult;

/// Where the feed reads from (schema data).
#[derive(Clone)]
pub struct EventFeed {
    /// JetStream context.
    pub js: jetstream::Context,
    /// Event stream name.
    pub stream: String,
    /// Users' keys, to show personal fields ([`super::personal`]).
    pub keys: covenant_personal::KeyStore,
}

impl EventFeed {
    /// The feed of `stream`.
    pub fn new(js: jetstream::Context, stream: String) -> Self {
        let keys = covenant_personal::KeyStore::attach(js.clone(), &stream);
        Self { js, stream, keys }
    }
}

/// Subscriptions.
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Events as they are appended, in stream order; only `eventTypes` when given.
    /// `afterSequence` resumes after a sequence the client has seen (a reconnecting
    /// client loses nothing); without it the feed starts with the next event. Needs a
    /// signed-in user, like `auditEvents`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        event_types: Option<Vec<String>>,
        after_sequence: Option<String>,
    ) -> async_graphql::Result<BoxStream<'static, ApiResult<AuditEvent>>> {
        if ctx.data_opt::<Option<crate::auth::Principal>>().copied().flatten().is_none() {
            return Err(err(crate::error::Code::Unauthenticated, "sign in to follow the audit trail"));
        }
        let deliver_policy = match after_sequence {
            None => consumer::DeliverPolicy::New,
            Some(s) => {
                let seq: u64 = s.trim().parse().map_err(|_| {
                    err(crate::error::Code::BadUserInput, "`afterSequence` must be a stream sequence number")
                })?;
                consumer::DeliverPolicy::ByStartSequence { start_sequence: seq.saturating_add(1) }
            }
        };
        let feed = ctx
            .data::<EventFeed>()
            .map_err(|_| err(crate::error::Code::Unavailable, "the event feed is not available"))?;
        let stream = feed.js.get_stream(&feed.stream).await.map_err(unavailable)?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig { deliver_policy, ..Default::default() })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        let (keys, admin) = (feed.keys.clone(), super::personal::is_admin(ctx));
        let feed = messages
            .map(|m| -> ApiResult<AuditEvent> {
                let m = m.map_err(|e| {
                    tracing::warn!(error = %e, "event feed interrupted");
                    err(
                        crate::error::Code::Unavailable,
                        "the event feed was interrupted; resubscribe with afterSequence",
                    )
                })?;
                let e = ProjectedEvent::from_message(&m)
                    .map_err(|_| err(crate::error::Code::Internal, "internal error"))?;
                Ok(AuditEvent::from(&e))
            })
            .then(move |item| {
                let keys = keys.clone();
                async move {
                    let mut e = item?;
                    super::personal::present(&keys, admin, std::slice::from_mut(&mut e)).await;
                    Ok(e)
                }
            })
            .filter(move |item: &ApiResult<AuditEvent>| {
                let keep = match (item, &event_types) {
                    (Ok(e), Some(types)) => types.contains(&e.event_type),
                    _ => true,
                };
                std::future::ready(keep)
            });
        // An error ends the feed (the client resubscribes from its last sequence).
        let mut failed = false;
        Ok(feed
            .take_while(move |item| {
                let go = !failed;
                failed |= item.is_err();
                std::future::ready(go)
            })
            .boxed())
    }
}

fn unavailable<E>(_: E) -> async_graphql::Error {
    err(crate::error::Code::Unavailable, "the event feed is not available")
}
