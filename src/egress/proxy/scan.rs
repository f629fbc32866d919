//! Spotting placeholders in a body as it streams past, and reporting every sighting.
//!
//! Bodies are never rewritten and never buffered whole: the scanner keeps only the last
//! `longest placeholder - 1` bytes between chunks, so a placeholder split across two reads is
//! still seen. Each secret is reported at most once per body.
//!
//! Invariant: an audit line names the secret, the host and the place; never a value, never a
//! placeholder.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use bytes::Bytes;
use secrecy::ExposeSecret;

use super::body::ChunkFilter;
use super::stats::EgressStats;
use super::substitute::{Place, Sighting};
use crate::egress::grant::Grant;

/// Reports sightings: one warn line (secret name, host, place) and one count each.
#[derive(Clone, Debug)]
pub(crate) struct Auditor {
    host: Arc<str>,
    stats: Arc<EgressStats>,
}

impl Auditor {
    pub(crate) fn new(host: &str, stats: Arc<EgressStats>) -> Self {
        Self { host: host.into(), stats }
    }

    pub(crate) fn report(&self, sighting: &Sighting) {
        self.stats.audit_placeholder.inc();
        tracing::warn!(
            secret = %sighting.name,
            host = %self.host,
            place = %sighting.place,
            "placeholder seen where it is not substituted; sent unchanged"
        );
    }
}

/// Finds placeholders in a byte stream, whatever the chunking.
pub(crate) struct PlaceholderScanner {
    ac: AhoCorasick,
    names: Vec<String>,
    reported: Vec<bool>,
    /// The tail of what was scanned, which may begin a placeholder completed by the next chunk.
    carry: Vec<u8>,
    keep: usize,
    auditor: Auditor,
}

impl PlaceholderScanner {
    /// A scanner for the placeholders of `grants`; `None` when there are none to look for.
    pub(crate) fn new(grants: &[Grant], auditor: Auditor) -> Option<Self> {
        let needles: Vec<&[u8]> = grants.iter().map(|g| g.placeholder.expose_secret().as_bytes()).collect();
        if needles.iter().all(|n| n.is_empty()) {
            return None;
        }
        let ac = AhoCorasick::new(needles.iter().filter(|n| !n.is_empty())).ok()?;
        let names = grants
            .iter()
            .filter(|g| !g.placeholder.expose_secret().is_empty())
            .map(|g| g.name.clone())
            .collect::<Vec<_>>();
        let keep = needles.iter().map(|n| n.len()).max().unwrap_or(1).saturating_sub(1);
        Some(Self { ac, reported: vec![false; names.len()], names, carry: Vec::new(), keep, auditor })
    }

    /// Scans `chunk`, reporting secrets seen for the first time in this stream.
    pub(crate) fn scan(&mut self, chunk: &[u8]) {
        if self.reported.iter().all(|r| *r) {
            return;
        }
        let carried = self.carry.len();
        self.carry.extend_from_slice(chunk);
        for m in self.ac.find_overlapping_iter(&self.carry) {
            // Matches wholly inside the carried tail were seen with the previous chunk.
            if m.end() <= carried {
                continue;
            }
            let i = m.pattern().as_usize();
            if !self.reported[i] {
                self.reported[i] = true;
                self.auditor.report(&Sighting { name: self.names[i].clone(), place: Place::Body });
            }
        }
        let drop = self.carry.len().saturating_sub(self.keep);
        self.carry.drain(..drop);
    }
}

impl ChunkFilter for PlaceholderScanner {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        self.scan(&chunk);
        chunk
    }

    fn finish(&mut self) -> Bytes {
        Bytes::new()
    }

    fn preserves_length(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::egress::binding::Binding;

    #[test]
    fn split_placeholders_are_seen_once() {
        let holder = "npm_PLACEHOLDER_abcdefghijklmnop";
        let grants = vec![Grant {
            name: "NPM_TOKEN".into(),
            placeholder: SecretString::from(holder),
            value: SecretString::from("v".repeat(holder.len())),
            binding: Arc::new(Binding::default()),
        }];
        let body = format!("{{\"a\":\"{holder}\",\"b\":\"{holder}\"}}");
        for size in 1..=body.len() {
            let stats = Arc::new(EgressStats::new());
            let mut scanner =
                PlaceholderScanner::new(&grants, Auditor::new("h", Arc::clone(&stats))).unwrap();
            for chunk in body.as_bytes().chunks(size) {
                scanner.scan(chunk);
            }
            assert_eq!(stats.audit_placeholder.get(), 1, "chunk size {size}");
        }
        let stats = Arc::new(EgressStats::new());
        let mut scanner = PlaceholderScanner::new(&grants, Auditor::new("h", Arc::clone(&stats))).unwrap();
        scanner.scan(&holder.as_bytes()[..holder.len() - 1]);
        scanner.scan(b"x");
        assert_eq!(stats.audit_placeholder.get(), 0);
    }
}
