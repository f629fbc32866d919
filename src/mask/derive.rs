//! Derivation of the byte patterns under which one secret value may show up
//! in command output: the value itself, its lines, and the common encodings
//! (base64 at every byte alignment, percent-encoding as the usual libraries
//! write it, JSON string escaping).
//!
//! A line of a multi-line value becomes a pattern only when it carries part of
//! the secret: whitespace-only lines and PEM armour lines (`-----BEGIN …-----`)
//! would otherwise hide the same text in every output.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Values longer than this get only the value itself and its lines: encoding
/// a large blob (a key file, a certificate) multiplies pattern bytes for
/// little benefit, and the 76-column wrapped base64 already covers the usual
/// way such blobs are printed only when they are small enough to matter.
pub const MAX_ENCODED_VALUE_LEN: usize = 4096;

/// Column at which the `base64` CLI wraps its output.
const BASE64_WRAP: usize = 76;

/// Whether `value` is long enough to be masked at all under `min_len`.
///
/// A value shorter than `min_len` (or empty) would yield no patterns, so a
/// caller that exports it must not rely on masking.
pub fn is_maskable(value: &[u8], min_len: usize) -> bool {
    !value.is_empty() && value.len() >= min_len
}

/// Every pattern under which `value` is hidden, deduplicated, each at least
/// `min_len` bytes (and never empty); none at all when the value itself is
/// not [maskable](is_maskable).
///
/// The first pattern is the value itself when it is long enough; the order of
/// the rest is unspecified. Patterns are zeroized when dropped.
pub fn derive_patterns(value: &[u8], min_len: usize) -> Vec<Zeroizing<Vec<u8>>> {
    if !is_maskable(value, min_len) {
        return Vec::new();
    }
    let mut out = Patterns { min_len: min_len.max(1), dedup: true, list: Vec::new() };
    out.add(value);
    let trimmed = trim_line_ends(value);
    out.add(trimmed);
    for line in value.split(|&b| b == b'\n') {
        let line = trim_line_ends(line);
        if carries_secret(line) {
            out.add(line);
        }
    }
    if value.len() > MAX_ENCODED_VALUE_LEN {
        return out.list;
    }
    // A value read from a file often carries a newline that the shell strips
    // before encoding it, so both forms are encoded.
    let bases: &[&[u8]] =
        if trimmed.len() != value.len() && !trimmed.is_empty() { &[value, trimmed] } else { &[value] };
    for base in bases {
        add_base64(&mut out, base);
        add_percent(&mut out, base);
        if let Ok(text) = std::str::from_utf8(base) {
            add_json(&mut out, text);
        }
    }
    out.list
}

/// An encoding of one value and the same encoding of another.
pub type EncodingPair = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);

/// Pairs of (encoding of `value`, the same encoding of `replacement`), for swapping one value
/// for another of the same length wherever it shows up encoded: the value itself and each
/// base64, percent and JSON form [`derive_patterns`] knows (JSON only when both are UTF-8).
/// Lines and trimmed forms are not paired, since the two values need not share line structure.
///
/// Each pattern appears once (the first pairing wins). Values of different lengths, or longer
/// than [`MAX_ENCODED_VALUE_LEN`], get only the raw pair.
pub fn derive_encoding_pairs(value: &[u8], replacement: &[u8]) -> Vec<EncodingPair> {
    let raw = || vec![(Zeroizing::new(value.to_vec()), Zeroizing::new(replacement.to_vec()))];
    if value.is_empty() || value.len() != replacement.len() || value.len() > MAX_ENCODED_VALUE_LEN {
        return raw();
    }
    let json = std::str::from_utf8(value).is_ok() && std::str::from_utf8(replacement).is_ok();
    // Without deduplication both lists hold the same encodings in the same order, so their
    // entries correspond position by position.
    let encode_all = |v: &[u8]| {
        let mut out = Patterns { min_len: 1, dedup: false, list: Vec::new() };
        out.add(v);
        add_base64(&mut out, v);
        add_percent(&mut out, v);
        if let (true, Ok(text)) = (json, std::str::from_utf8(v)) {
            add_json(&mut out, text);
        }
        out.list
    };
    let (from, to) = (encode_all(value), encode_all(replacement));
    if from.len() != to.len() {
        return raw();
    }
    let mut pairs: Vec<EncodingPair> = Vec::with_capacity(from.len());
    for (a, b) in from.into_iter().zip(to) {
        if !pairs.iter().any(|(p, _)| p.as_slice() == a.as_slice()) {
            pairs.push((a, b));
        }
    }
    pairs
}

struct Patterns {
    min_len: usize,
    /// Off only for [`derive_encoding_pairs`], which needs every encoding in a fixed order.
    dedup: bool,
    list: Vec<Zeroizing<Vec<u8>>>,
}

impl Patterns {
    fn add(&mut self, pattern: &[u8]) {
        if pattern.len() >= self.min_len && !(self.dedup && self.list.iter().any(|p| p.as_slice() == pattern))
        {
            self.list.push(Zeroizing::new(pattern.to_vec()));
        }
    }

    fn add_owned(&mut self, pattern: Zeroizing<Vec<u8>>) {
        self.add(&pattern);
    }
}

/// Whether a line of a multi-line value is specific to it: not blank and not
/// PEM armour, which every certificate and key shares.
fn carries_secret(line: &[u8]) -> bool {
    let text = line.trim_ascii();
    let armour = text.starts_with(b"-----")
        && text.ends_with(b"-----")
        && (text.starts_with(b"-----BEGIN ") || text.starts_with(b"-----END "));
    !text.is_empty() && !armour
}

fn trim_line_ends(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

fn encode(engine: &impl Engine, bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(engine.encode(bytes).into_bytes())
}

fn add_base64(out: &mut Patterns, value: &[u8]) {
    for engine in [&STANDARD, &URL_SAFE] {
        out.add_owned(encode(engine, value));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.add_owned(encode(engine, value));
        // Inside a longer blob the value starts at byte offset 0, 1 or 2 of a
        // 3-byte group. Prefixing `align` zero bytes reproduces that bit
        // layout; only the characters whose 6 bits all come from the value
        // are independent of the unknown neighbouring bytes.
        for align in 0..3 {
            let mut shifted = Zeroizing::new(vec![0u8; align]);
            shifted.extend_from_slice(value);
            let encoded = encode(engine, &shifted);
            let first = (8 * align).div_ceil(6);
            let end = 8 * (align + value.len()) / 6;
            if let Some(chars) = encoded.get(first..end) {
                out.add(chars);
            }
        }
    }
    let padded = encode(&STANDARD, value);
    if padded.len() > BASE64_WRAP {
        for sep in [&b"\n"[..], b"\r\n"] {
            let mut wrapped = Zeroizing::new(Vec::with_capacity(padded.len() * 2));
            for (i, line) in padded.chunks(BASE64_WRAP).enumerate() {
                if i > 0 {
                    wrapped.extend_from_slice(sep);
                }
                wrapped.extend_from_slice(line);
            }
            out.add_owned(wrapped);
        }
    }
}

fn hex_digit(nibble: u8, upper: bool) -> u8 {
    let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    digits[usize::from(nibble & 0xf)]
}

/// How one library percent-encodes: the punctuation it leaves as it is besides
/// letters, digits and `-._` (which none escapes) and `~` (which only the
/// WHATWG form encoding escapes), and whether a space becomes `+`.
struct PercentStyle {
    keep: &'static [u8],
    plus_space: bool,
    escapes_tilde: bool,
    /// Also written with lowercase hex digits by some encoders.
    lower_too: bool,
}

/// The percent-encodings in common use. Many libraries share one of them;
/// identical results are deduplicated per value.
const PERCENT_STYLES: &[PercentStyle] = &[
    // RFC 3986 component encoding: Rust's and Python's `quote(s, safe='')`,
    // curl_easy_escape, older curl `--data-urlencode`.
    PercentStyle { keep: b"", plus_space: false, escapes_tilde: false, lower_too: true },
    // Path-style: Python's `urllib.parse.quote` (safe='/' by default).
    PercentStyle { keep: b"/", plus_space: false, escapes_tilde: false, lower_too: true },
    // Form encoding: Python's `quote_plus`, Go's `url.QueryEscape`, curl
    // `--data-urlencode` since 7.86.
    PercentStyle { keep: b"", plus_space: true, escapes_tilde: false, lower_too: true },
    // JavaScript's `encodeURIComponent`.
    PercentStyle { keep: b"!'()*", plus_space: false, escapes_tilde: false, lower_too: false },
    // Go's `url.PathEscape`.
    PercentStyle { keep: b"$&+:=@", plus_space: false, escapes_tilde: false, lower_too: false },
    // WHATWG form encoding: JavaScript's `URLSearchParams`, Java's `URLEncoder`.
    PercentStyle { keep: b"*", plus_space: true, escapes_tilde: true, lower_too: false },
];

fn add_percent(out: &mut Patterns, value: &[u8]) {
    for style in PERCENT_STYLES {
        let cases: &[bool] = if style.lower_too { &[true, false] } else { &[true] };
        for &upper in cases {
            let mut enc = Zeroizing::new(Vec::with_capacity(value.len() * 3));
            for &b in value {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => enc.push(b),
                    b'~' if !style.escapes_tilde => enc.push(b),
                    b' ' if style.plus_space => enc.push(b'+'),
                    _ if style.keep.contains(&b) => enc.push(b),
                    _ => enc.extend_from_slice(&[b'%', hex_digit(b >> 4, upper), hex_digit(b, upper)]),
                }
            }
            out.add_owned(enc);
        }
    }
}

fn push_u_escape(enc: &mut Vec<u8>, unit: u16, upper: bool) {
    enc.extend_from_slice(b"\\u");
    for shift in [12u16, 8, 4, 0] {
        // The mask keeps the nibble below 16, so the cast cannot truncate.
        enc.push(hex_digit(((unit >> shift) & 0xf) as u8, upper));
    }
}

fn add_json(out: &mut Patterns, text: &str) {
    // `ascii`: None writes non-ASCII literally (serde_json, Go); Some(upper)
    // writes it as \uXXXX (Python's ensure_ascii, PHP, Jackson).
    for ascii in [None, Some(false), Some(true)] {
        for escape_slash in [false, true] {
            let upper = ascii == Some(true);
            let mut enc = Zeroizing::new(Vec::with_capacity(text.len() * 2));
            let mut units = [0u16; 2];
            for ch in text.chars() {
                match ch {
                    '"' => enc.extend_from_slice(b"\\\""),
                    '\\' => enc.extend_from_slice(b"\\\\"),
                    '\n' => enc.extend_from_slice(b"\\n"),
                    '\r' => enc.extend_from_slice(b"\\r"),
                    '\t' => enc.extend_from_slice(b"\\t"),
                    '\u{8}' => enc.extend_from_slice(b"\\b"),
                    '\u{c}' => enc.extend_from_slice(b"\\f"),
                    '/' if escape_slash => enc.extend_from_slice(b"\\/"),
                    c if u32::from(c) < 0x20 || (ascii.is_some() && u32::from(c) >= 0x7f) => {
                        for unit in c.encode_utf16(&mut units) {
                            push_u_escape(&mut enc, *unit, upper);
                        }
                    }
                    c => {
                        let mut buf = [0u8; 4];
                        enc.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            out.add_owned(enc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(value: &[u8], min_len: usize) -> Vec<Vec<u8>> {
        derive_patterns(value, min_len).iter().map(|p| p.to_vec()).collect()
    }

    fn has(patterns: &[Vec<u8>], p: &[u8]) -> bool {
        patterns.iter().any(|x| x == p)
    }

    #[test]
    fn value_first_and_deduplicated() {
        let p = derived(b"plainvalue123", 1);
        assert_eq!(p[0], b"plainvalue123");
        let mut sorted = p.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), p.len());
    }

    #[test]
    fn lines_and_trailing_newline() {
        let p = derived(b"line-one\r\nline-two\n", 4);
        assert!(has(&p, b"line-one\r\nline-two\n"));
        assert!(has(&p, b"line-one\r\nline-two"));
        assert!(has(&p, b"line-one"));
        assert!(has(&p, b"line-two"));
        assert!(has(&p, b"bGluZS1vbmUNCmxpbmUtdHdv")); // base64 of the trimmed value
    }

    #[test]
    fn base64_forms() {
        let v = b"hello?>world";
        let p = derived(v, 4);
        assert!(has(&p, STANDARD.encode(v).as_bytes()));
        assert!(has(&p, URL_SAFE.encode(v).as_bytes()));
        // Every alignment inside a longer encoded blob.
        for prefix in [&b""[..], b"x", b"xy"] {
            let mut blob = prefix.to_vec();
            blob.extend_from_slice(v);
            blob.extend_from_slice(b"trailing");
            let enc = STANDARD.encode(&blob);
            assert!(
                p.iter()
                    .any(|pat| pat.len() >= 12 && enc.as_bytes().windows(pat.len()).any(|w| w == &pat[..])),
                "alignment {}",
                prefix.len()
            );
        }
    }

    #[test]
    fn base64_wrapped_only_when_long() {
        let short = derived(&[7u8; 50], 1);
        assert!(!short.iter().any(|p| p.contains(&b'\n')));
        let long_value = vec![0xabu8; 100];
        let long = derived(&long_value, 1);
        let enc = STANDARD.encode(&long_value);
        let wrapped = format!("{}\n{}", &enc[..76], &enc[76..]);
        assert!(has(&long, wrapped.as_bytes()));
        let wrapped_crlf = format!("{}\r\n{}", &enc[..76], &enc[76..]);
        assert!(has(&long, wrapped_crlf.as_bytes()));
    }

    #[test]
    fn percent_forms() {
        let p = derived("a b/c+ä".as_bytes(), 1);
        assert!(has(&p, b"a%20b%2Fc%2B%C3%A4"));
        assert!(has(&p, b"a%20b/c%2B%C3%A4"));
        assert!(has(&p, b"a+b%2Fc%2B%C3%A4"));
        assert!(has(&p, b"a%20b%2fc%2b%c3%a4"));
    }

    #[test]
    fn percent_forms_of_common_libraries() {
        // Outputs of each library for these values, as the libraries print them.
        let p = derived(b"p@ss word!2024", 4);
        for (who, encoded) in [
            ("encodeURIComponent", "p%40ss%20word!2024"),
            ("Python quote / curl_easy_escape", "p%40ss%20word%212024"),
            ("quote_plus / QueryEscape / curl --data-urlencode", "p%40ss+word%212024"),
            ("curl 7 --data-urlencode (lower hex)", "p%40ss+word%212024"),
            ("Go PathEscape", "p@ss%20word%212024"),
        ] {
            assert!(has(&p, encoded.as_bytes()), "{who}");
        }
        let p = derived(b"a~b*c'd(e)f/g$h&i+j:k=l@m n", 4);
        for (who, encoded) in [
            ("encodeURIComponent", "a~b*c'd(e)f%2Fg%24h%26i%2Bj%3Ak%3Dl%40m%20n"),
            ("Python quote (safe='/')", "a~b%2Ac%27d%28e%29f/g%24h%26i%2Bj%3Ak%3Dl%40m%20n"),
            ("Python quote_plus, Go QueryEscape", "a~b%2Ac%27d%28e%29f%2Fg%24h%26i%2Bj%3Ak%3Dl%40m+n"),
            ("curl 7.88 --data-urlencode", "a~b%2ac%27d%28e%29f%2fg%24h%26i%2bj%3ak%3dl%40m+n"),
            ("Go PathEscape", "a~b%2Ac%27d%28e%29f%2Fg$h&i+j:k=l@m%20n"),
            ("URLSearchParams, Java URLEncoder", "a%7Eb*c%27d%28e%29f%2Fg%24h%26i%2Bj%3Ak%3Dl%40m+n"),
        ] {
            assert!(has(&p, encoded.as_bytes()), "{who}");
        }
    }

    #[test]
    fn encodings_stay_few_and_distinct() {
        // An alphanumeric value's percent and JSON forms are the value itself.
        let plain = derived(b"AbCdEf0123456789xyz", 4);
        assert!(plain.len() <= 12, "{}", plain.len());
        // Even a value that every encoder treats differently stays bounded.
        let fancy = derived("a~b*c'd(e)f/g$h&i+j:k=l@m n\"ä\n".as_bytes(), 4);
        assert!(fancy.len() <= 60, "{}", fancy.len());
    }

    #[test]
    fn blank_and_armour_lines_are_not_patterns() {
        let p = derived(b"first-line-of-secret\n    \nlast-line-of-secret", 4);
        assert!(has(&p, b"first-line-of-secret") && has(&p, b"last-line-of-secret"));
        assert!(!p.iter().any(|x| x.trim_ascii().is_empty()), "a blank line is a pattern");
        let pem = b"-----BEGIN PRIVATE KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\n\t \r\n-----END PRIVATE KEY-----\r\n";
        let p = derived(pem, 4);
        assert!(has(&p, b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"));
        assert!(!has(&p, b"-----BEGIN PRIVATE KEY-----"));
        assert!(!has(&p, b"-----END PRIVATE KEY-----"));
        assert!(!p.iter().any(|x| x.trim_ascii().is_empty()));
        // The whole value is still a pattern, armour included.
        assert!(has(&p, pem));
    }

    #[test]
    fn json_forms() {
        let p = derived("q\"b\\s/ä☃😀\u{1}".as_bytes(), 1);
        assert!(has(&p, "q\\\"b\\\\s/ä☃😀\\u0001".as_bytes()));
        assert!(has(&p, b"q\\\"b\\\\s/\\u00e4\\u2603\\ud83d\\ude00\\u0001"));
        assert!(has(&p, b"q\\\"b\\\\s/\\u00E4\\u2603\\uD83D\\uDE00\\u0001"));
        assert!(has(&p, b"q\\\"b\\\\s\\/\\u00e4\\u2603\\ud83d\\ude00\\u0001"));
        assert!(has(&p, "q\\\"b\\\\s\\/ä☃😀\\u0001".as_bytes()));
        // Not UTF-8: no JSON forms, and no panic.
        let _ = derived(b"\xff\xfe\"abc", 1);
    }

    #[test]
    fn min_len_applies_to_each_pattern() {
        assert!(derived(b"abc", 4).is_empty());
        assert!(!is_maskable(b"abc", 4));
        assert!(is_maskable(b"abcd", 4));
        assert!(!is_maskable(b"", 0));
        for p in derived(b"ab\ncdefgh", 3) {
            assert!(p.len() >= 3);
        }
        assert!(derived(b"", 0).is_empty());
    }

    #[test]
    fn encoding_pairs_correspond() {
        let value = b"ghp_real/value+with~odd chars";
        let holder = b"ghp_PLACEHOLDERxxxxxxxxxxxxxx";
        let pairs = derive_encoding_pairs(value, holder);
        let has_pair = |a: &[u8], b: &[u8]| pairs.iter().any(|(p, r)| p.as_slice() == a && r.as_slice() == b);
        assert!(has_pair(value, holder));
        assert!(has_pair(STANDARD.encode(value).as_bytes(), STANDARD.encode(holder).as_bytes()));
        assert!(has_pair(
            URL_SAFE_NO_PAD.encode(value).as_bytes(),
            URL_SAFE_NO_PAD.encode(holder).as_bytes()
        ));
        assert!(has_pair(b"ghp_real%2Fvalue%2Bwith~odd%20chars", holder));
        assert!(has_pair(b"ghp_real\\/value+with~odd chars", holder));
        // Inside a longer base64 blob, the value's characters map to the placeholder's.
        let mut blob = b"x".to_vec();
        blob.extend_from_slice(value);
        let enc = STANDARD.encode(&blob);
        assert!(pairs.iter().any(|(p, r)| p.len() > 20
            && enc.contains(std::str::from_utf8(p).unwrap())
            && r.len() == p.len()));
        // Every pattern once.
        let mut seen: Vec<&[u8]> = pairs.iter().map(|(p, _)| p.as_slice()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), pairs.len());
        // Different lengths: only the raw pair.
        assert_eq!(derive_encoding_pairs(b"abcdefgh", b"abc").len(), 1);
    }

    #[test]
    fn large_values_get_no_encodings() {
        let mut v = vec![b'x'; MAX_ENCODED_VALUE_LEN];
        v.push(b'\n');
        v.extend_from_slice(b"tail-line");
        let p = derived(&v, 1);
        assert_eq!(p.len(), 3); // value, first line, second line
    }
}
