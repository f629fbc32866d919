//! Reflection: in answers from bound hosts, every encoding of a real value becomes the same
//! encoding of its placeholder, so a host that echoes a credential back (an error page, a
//! token-info endpoint) never hands the command the value it was kept from.
//!
//! The encodings are the mask module's ([`derive_encoding_pairs`]): the value, base64 at every
//! alignment, percent and JSON forms. Matching is leftmost-longest, so a longer encoding wins
//! over a shorter one it contains.
//!
//! Streaming holds back only the longest suffix of the answer that could still begin an
//! encoding (as `mask::stream` does), so an answer that streams (server-sent events) is not
//! delayed beyond what matching needs. Invariant: streamed in any chunking equals
//! [`Reflector::replace_all`] of the whole.

use std::fmt;
use std::sync::Arc;

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{AhoCorasick, Anchored, MatchKind};
use bytes::Bytes;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::body::ChunkFilter;
use crate::egress::grant::Grant;
use crate::mask::derive_encoding_pairs;

/// The compiled value → placeholder swaps of one credential's grants.
pub(crate) struct Reflector {
    find: AhoCorasick,
    /// The same patterns with standard semantics, walked to learn how much of an answer's end
    /// could still begin one.
    prefix: NFA,
    replacements: Vec<Zeroizing<Vec<u8>>>,
    max_len: usize,
    changes_length: bool,
}

impl fmt::Debug for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reflector")
            .field("patterns", &self.replacements.len())
            .field("changes_length", &self.changes_length)
            .finish()
    }
}

impl Reflector {
    /// Compiles the swaps for `grants`; `None` when there is nothing to swap.
    pub(crate) fn new(grants: &[Grant]) -> Option<Arc<Self>> {
        let mut patterns: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut replacements = Vec::new();
        for grant in grants {
            let value = grant.value.expose_secret().as_bytes();
            let holder = grant.placeholder.expose_secret().as_bytes();
            for (pattern, replacement) in derive_encoding_pairs(value, holder) {
                if !pattern.is_empty() && !patterns.iter().any(|p| p.as_slice() == pattern.as_slice()) {
                    patterns.push(pattern);
                    replacements.push(replacement);
                }
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let refs: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
        let find = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&refs).ok()?;
        let prefix = NFA::builder().match_kind(MatchKind::Standard).build(&refs).ok()?;
        let max_len = refs.iter().map(|p| p.len()).max().unwrap_or(0);
        let changes_length = patterns.iter().zip(&replacements).any(|(p, r)| p.len() != r.len());
        Some(Arc::new(Self { find, prefix, replacements, max_len, changes_length }))
    }

    /// True when some swap changes a length, so a reflected body must be re-framed.
    pub(crate) fn changes_length(&self) -> bool {
        self.changes_length
    }

    /// `hay` with every encoding swapped, or `None` when it holds none.
    pub(crate) fn replace_all(&self, hay: &[u8]) -> Option<Vec<u8>> {
        if !self.find.is_match(hay) {
            return None;
        }
        let mut out = Vec::with_capacity(hay.len() + 64);
        self.replace_until(hay, hay.len(), &mut out);
        Some(out)
    }

    /// Writes `hay` with swaps up to at least `decided` into `out`: every match starting before
    /// `decided` is swapped whole. Returns how far `hay` was consumed.
    fn replace_until(&self, hay: &[u8], decided: usize, out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        for m in self.find.find_iter(hay) {
            if m.start() >= decided {
                break;
            }
            out.extend_from_slice(&hay[pos..m.start()]);
            out.extend_from_slice(&self.replacements[m.pattern().as_usize()]);
            pos = m.end();
        }
        if pos < decided {
            out.extend_from_slice(&hay[pos..decided]);
            pos = decided;
        }
        pos
    }

    /// Length of the longest suffix of `hay` that is a prefix of some pattern. The automaton's
    /// state after `hay` stands for that suffix; walking only the last `j` bytes reaches the
    /// same state exactly when `j` is at least its depth, so the depth is found by bisection.
    fn suffix_depth(&self, hay: &[u8]) -> usize {
        let Ok(start) = self.prefix.start_state(Anchored::No) else { return hay.len().min(self.max_len) };
        let walk =
            |bytes: &[u8]| bytes.iter().fold(start, |sid, &b| self.prefix.next_state(Anchored::No, sid, b));
        let window = hay.len().min(self.max_len);
        let tail = |j: usize| &hay[hay.len() - j..];
        let end = walk(tail(window));
        if self.prefix.is_start(end) {
            return 0;
        }
        let (mut lo, mut hi) = (1, window);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if walk(tail(mid)) == end { hi = mid } else { lo = mid + 1 }
        }
        lo
    }

    /// A streaming swapper for one body.
    pub(crate) fn stream(self: &Arc<Self>) -> ReflectStream {
        ReflectStream { reflector: Arc::clone(self), held: Zeroizing::new(Vec::new()) }
    }
}

/// Swaps encodings in a body that arrives in chunks.
pub(crate) struct ReflectStream {
    reflector: Arc<Reflector>,
    /// Undecided bytes (possibly the start of a real value, hence zeroized).
    held: Zeroizing<Vec<u8>>,
}

impl ReflectStream {
    fn process(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let keep = if last { 0 } else { self.reflector.suffix_depth(&self.held) };
        let decided = self.held.len() - keep;
        let mut out = Vec::with_capacity(decided + 64);
        let consumed = self.reflector.replace_until(&self.held, decided, &mut out);
        self.held.drain(..consumed);
        out
    }
}

impl ChunkFilter for ReflectStream {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        // The usual case: nothing held and no encoding in the chunk. Its decided part goes out
        // without a copy; only the suffix that could begin an encoding is kept.
        if self.held.is_empty() {
            let keep = self.reflector.suffix_depth(&chunk);
            let decided = chunk.len() - keep;
            if !self.reflector.find.is_match(&chunk[..]) {
                self.held.extend_from_slice(&chunk[decided..]);
                return chunk.slice(..decided);
            }
        }
        Bytes::from(self.process(&chunk, false))
    }

    fn finish(&mut self) -> Bytes {
        Bytes::from(self.process(&[], true))
    }

    fn preserves_length(&self) -> bool {
        !self.reflector.changes_length
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use secrecy::SecretString;

    use super::*;
    use crate::egress::binding::Binding;

    const VALUE: &str = "ghp_real/value+0123456789abcdefghijk";
    const HOLDER: &str = "ghp_PLACEHOLDER0123456789abcdefghijk";

    fn reflector() -> Arc<Reflector> {
        let grant = Grant {
            name: "GITHUB_TOKEN".into(),
            placeholder: SecretString::from(HOLDER),
            value: SecretString::from(VALUE),
            binding: Arc::new(Binding::default()),
        };
        Reflector::new(&[grant]).unwrap()
    }

    fn cases() -> Vec<(String, String)> {
        let b64 = |s: &str| STANDARD.encode(s);
        vec![
            (format!("token={VALUE}!"), format!("token={HOLDER}!")),
            (format!("{VALUE}{VALUE}"), format!("{HOLDER}{HOLDER}")),
            (format!("{{\"t\":\"{}\"}}", b64(VALUE)), format!("{{\"t\":\"{}\"}}", b64(HOLDER))),
            ("q=ghp_real%2Fvalue%2B0123456789abcdefghijk&x".to_string(), format!("q={HOLDER}&x")),
            (
                "{\"t\":\"ghp_real\\/value+0123456789abcdefghijk\"}".to_string(),
                format!("{{\"t\":\"{HOLDER}\"}}"),
            ),
            ("nothing here ghp_real".into(), "nothing here ghp_real".into()),
            (String::new(), String::new()),
        ]
    }

    #[test]
    fn one_shot() {
        let r = reflector();
        assert!(r.changes_length());
        for (input, want) in cases() {
            let got = r.replace_all(input.as_bytes()).unwrap_or_else(|| input.as_bytes().to_vec());
            assert_eq!(String::from_utf8(got).unwrap(), want, "{input}");
        }
        assert!(r.replace_all(b"plain").is_none());
    }

    #[test]
    fn every_chunking_equals_one_shot() {
        let r = reflector();
        for (input, want) in cases() {
            for size in 1..=input.len().max(1) + 1 {
                let mut s = r.stream();
                let mut out = Vec::new();
                for chunk in input.as_bytes().chunks(size) {
                    out.extend_from_slice(&s.push(Bytes::copy_from_slice(chunk)));
                }
                out.extend_from_slice(&s.finish());
                assert_eq!(String::from_utf8(out).unwrap(), want, "{input} at {size}");
            }
        }
    }

    #[test]
    fn unrelated_text_is_not_held() {
        let r = reflector();
        let mut s = r.stream();
        assert_eq!(&s.push(Bytes::from_static(b"data: hello\n\n"))[..], b"data: hello\n\n");
        // The start of the value waits for more.
        assert_eq!(&s.push(Bytes::from_static(b"x ghp_re"))[..], b"x ");
        assert_eq!(&s.finish()[..], b"ghp_re");
    }
}
