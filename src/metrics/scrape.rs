//! Values read at scrape time rather than counted as they change: how many secrets are
//! registered, and what the masker has seen. The state hands over closures over the registry
//! and the mask set, so this module needs neither.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::label::ScopeKind;

/// Secrets registered now, across every scope of each kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SecretCounts {
    /// Entries of the sandbox-wide scope (API and discovered).
    pub(crate) sandbox: u64,
    /// Entries of all conversation scopes together.
    pub(crate) conversations: u64,
}

/// What has passed through the masker since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MaskedTotals {
    /// Output bytes searched.
    pub(crate) bytes: u64,
    /// Hidden regions replaced.
    pub(crate) replacements: u64,
}

type Source<T> = Box<dyn Fn() -> T + Send + Sync>;

/// The scrape-time sources.
pub(crate) struct Observed {
    pub(crate) secrets: Source<SecretCounts>,
    pub(crate) masked: Source<MaskedTotals>,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed").finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ScopeLabels {
    scope: ScopeKind,
}

impl Collector for Observed {
    // Help texts end with a period here: the registry adds one only to the families it holds.
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let secrets = (self.secrets)();
        let mut family = encoder.encode_descriptor(
            "secrets_registered",
            "Secret descriptors registered now, by kind of scope.",
            None,
            MetricType::Gauge,
        )?;
        for (scope, count) in
            [(ScopeKind::Sandbox, secrets.sandbox), (ScopeKind::Conversation, secrets.conversations)]
        {
            let gauge = ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&ScopeLabels { scope })?)?;
        }
        let masked = (self.masked)();
        let counters = [
            ("masked_bytes", "Output bytes that passed through the masker.", masked.bytes),
            ("mask_replacements", "Secret occurrences the masker replaced.", masked.replacements),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}
