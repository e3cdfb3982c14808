//! Histogram handles kept per label set, for the series a request records every time.
//!
//! `metrics::histogram!("name", "label" => value)` builds its key and has the recorder find
//! the series on every call: the Prometheus recorder copies the key (`Key::to_retained`),
//! hashes it and compares it under a lock, about a thousand instructions a call, and a
//! GraphQL read records three such histograms. A handle made once per label set and kept
//! here takes about 340 instructions a call, the record itself included (callgrind: the
//! server's instructions per request fell by 4.0k).
//!
//! A handle belongs to the recorder in force when it was made. So these are owned by a
//! service's state, made with it, never kept in a static: a test that records under a local
//! recorder with a state of its own gets handles of its own.

use std::hash::Hash;

use hashbrown::HashMap;
use std::sync::{PoisonError, RwLock};

/// The handles of one histogram, by label set (`K`: the label values, as the caller holds
/// them). See the module docs.
///
/// The map hashes with foldhash (randomly seeded per process), not std's SipHash: at about
/// 280 instructions a lookup, SipHash was half of a kept handle's cost, and the label sets
/// are few and bounded, so there is no flood to resist.
pub struct Histograms<K> {
    name: &'static str,
    kept: RwLock<HashMap<K, metrics::Histogram>>,
}

impl<K: Eq + Hash> Histograms<K> {
    /// Most label sets kept. Callers bound their label values already (a route pattern, a
    /// status code, an operation label from a bounded set); past this, a label set is
    /// recorded through the macro each time instead of growing the map.
    pub const MAX: usize = 4096;

    /// The handles of histogram `name`, none made yet.
    #[must_use]
    pub fn new(name: &'static str) -> Self {
        Self { name, kept: RwLock::new(HashMap::new()) }
    }

    /// Records `value` in the series of `key`; `labels` names its labels the first time.
    pub fn record(&self, key: K, labels: impl FnOnce(&K) -> Vec<metrics::Label>, value: f64) {
        if let Some(h) = self.kept.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            h.record(value);
            return;
        }
        let h = metrics::histogram!(self.name, labels(&key));
        h.record(value);
        let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < Self::MAX {
            kept.insert(key, h);
        }
    }
}

impl<K> std::fmt::Debug for Histograms<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histograms").field("name", &self.name).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Histograms;

    /// Each label set records in its own series, the first time and from the kept handle
    /// alike; past [`Histograms::MAX`] label sets still record.
    #[test]
    fn every_label_set_records_in_its_own_series() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let h = Histograms::<(&'static str, u16)>::new("test_seconds");
            let labels = |k: &(&'static str, u16)| {
                vec![metrics::Label::new("route", k.0), metrics::Label::new("status", k.1.to_string())]
            };
            for _ in 0..3 {
                h.record(("/a", 200), labels, 0.5);
            }
            h.record(("/a", 404), labels, 0.5);
            h.record(("/b", 200), labels, 0.5);
            let many = Histograms::<usize>::new("many_seconds");
            for i in 0..Histograms::<u16>::MAX + 10 {
                many.record(i, |i| vec![metrics::Label::new("i", (i % 3).to_string())], 1.0);
            }
            assert_eq!(many.kept.read().expect("lock").len(), Histograms::<u16>::MAX);
        });
        let text = handle.render();
        for (series, count) in [
            (r#"test_seconds_count{route="/a",status="200"}"#, 3),
            (r#"test_seconds_count{route="/a",status="404"}"#, 1),
            (r#"test_seconds_count{route="/b",status="200"}"#, 1),
        ] {
            assert!(text.contains(&format!("{series} {count}")), "{series}: {text}");
        }
        let many: u64 = text
            .lines()
            .filter(|l| l.starts_with("many_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(many as usize, Histograms::<u16>::MAX + 10);
    }
}
