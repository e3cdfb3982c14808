//! The country directory projects consult: a leader read of the country's subject.

use covenant_domain::{Country, CountryCode, CountryDirectory};

use crate::log::EventLog;

/// Answers "is this country registered?" from the event log itself. A country's subject
/// holds a message iff it was registered (registration is its first event, and countries
/// are never deleted).
pub struct LogDirectory {
    log: EventLog,
}

impl LogDirectory {
    /// A directory over `log`.
    pub fn new(log: EventLog) -> Self {
        Self { log }
    }
}

#[async_trait::async_trait]
impl CountryDirectory for LogDirectory {
    async fn is_registered(&self, code: &CountryCode) -> Result<bool, String> {
        let subject = self.log.subject(<Country as cqrs_es::Aggregate>::TYPE, code.as_str());
        self.log.last_event(&subject).await.map(|e| e.is_some()).map_err(|e| e.to_string())
    }
}
