//! Placeholders: what a command sees in place of a bound secret.
//!
//! A placeholder is a deterministic function of a key, the secret's identity (scope and
//! name) and the value's public *shape* — its length, its well-known prefix (`ghp_`,
//! `sk-ant-api03-`, …) and its alphabet class (digits, hex, base62, base64url, …) — and of
//! nothing else in the value. The key is random per start, or the placeholder key derived
//! from the state key when one is configured, so the placeholders a credential store (`gh`,
//! `git`, `npm`) saved survive a resume. The same secret keeps its placeholder across
//! rotations that keep the value's shape.
//!
//! Formats that carry a checksum get a valid one, so a client that checks it locally
//! accepts the placeholder: GitHub's classic tokens (`ghp_` and friends: 30 base62
//! characters, then the CRC32 of those in 6 base62 digits).
//!
//! Invariants: a placeholder has the value's length and prefix, is never equal to the value,
//! and differs between secrets (up to the odds of a random collision).

use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// Well-known public prefixes, longest first where one extends another; `true` where the
/// body's punctuation is fixed by the format (kept in place) rather than random.
const PREFIXES: &[(&str, bool)] = &[
    ("github_pat_", true),
    ("ghp_", false),
    ("gho_", false),
    ("ghu_", false),
    ("ghs_", false),
    ("ghr_", false),
    ("glpat-", false),
    ("gldt-", false),
    ("glrt-", false),
    ("sk-ant-api03-", false),
    ("sk-ant-admin01-", false),
    ("sk-ant-", false),
    ("sk-proj-", false),
    ("sk-svcacct-", false),
    ("sk-admin-", false),
    ("sk-or-v1-", false),
    ("sk_live_", false),
    ("sk_test_", false),
    ("rk_live_", false),
    ("sk-", false),
    ("xoxb-", true),
    ("xoxp-", true),
    ("xoxa-", true),
    ("xoxe-", true),
    ("xapp-", true),
    ("npm_", false),
    ("pypi-", false),
    ("hf_", false),
    ("gsk_", false),
    ("tvly-", false),
    ("lin_api_", false),
    ("r8_", false),
    ("dop_v1_", false),
    ("xai-", false),
    ("pplx-", false),
    ("AKIA", false),
    ("ASIA", false),
    ("AIza", false),
];

/// GitHub classic token prefixes (`ghp_` + 30 base62 + 6 base62 CRC32).
const GITHUB_CLASSIC: &[&str] = &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"];
const GITHUB_ENTROPY: usize = 30;
const GITHUB_CHECKSUM: usize = 6;

const DIGITS: &[u8] = b"0123456789";
const HEX_LOWER: &[u8] = b"0123456789abcdef";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";
const LOWER_ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const UPPER_ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BASE64URL: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
const BASE64: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/";

/// Makes placeholders. Holds only its key.
pub struct Placeholders {
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for Placeholders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Placeholders(..)")
    }
}

impl Placeholders {
    /// With `placeholder_key` (derived from the configured state key), placeholders are the
    /// same across restarts; without one they are random per start.
    pub fn new(placeholder_key: Option<&SecretBox<[u8; 32]>>) -> Self {
        let mut key = Box::new([0u8; 32]);
        match placeholder_key {
            Some(k) => key.copy_from_slice(k.expose_secret()),
            None => rand::thread_rng().fill_bytes(&mut key[..]),
        }
        Self { key: SecretBox::new(key) }
    }

    /// The placeholder of the secret `id` (its scope and name) whose value is `value`: ASCII,
    /// `value.len()` bytes, the value's well-known prefix kept, never equal to `value`.
    pub fn make(&self, id: &str, value: &[u8]) -> String {
        let (prefix, body_shape) = shape(value);
        for attempt in 0u32.. {
            let mut stream = Stream::new(self.key.expose_secret(), id, value.len(), attempt);
            let mut out = prefix.to_owned();
            match &body_shape {
                Body::GithubClassic => {
                    let entropy: String = (0..GITHUB_ENTROPY).map(|_| stream.pick(BASE62)).collect();
                    out.push_str(&entropy);
                    out.push_str(&github_checksum(entropy.as_bytes()));
                }
                Body::Uniform { class, len, padding } => {
                    out.extend((0..*len).map(|_| stream.pick(class)));
                    out.extend(std::iter::repeat_n('=', *padding));
                }
                Body::Structured(runs) => {
                    for run in runs {
                        match run {
                            Run::Fixed(c) => out.push(*c),
                            Run::Random(class, len) => out.extend((0..*len).map(|_| stream.pick(class))),
                        }
                    }
                }
            }
            if out.as_bytes() != value {
                return out;
            }
        }
        unreachable!("the attempt counter is unbounded")
    }
}

/// How a value's body (after its prefix) is rebuilt.
enum Body {
    GithubClassic,
    Uniform { class: &'static [u8], len: usize, padding: usize },
    Structured(Vec<Run>),
}

enum Run {
    Fixed(char),
    Random(&'static [u8], usize),
}

/// The value's public prefix and the shape of the rest.
fn shape(value: &[u8]) -> (&'static str, Body) {
    let known = PREFIXES.iter().find(|(p, _)| value.len() > p.len() && value.starts_with(p.as_bytes()));
    let Some(&(prefix, structured)) = known else { return ("", uniform(value)) };
    let body = &value[prefix.len()..];
    if GITHUB_CLASSIC.contains(&prefix)
        && body.len() == GITHUB_ENTROPY + GITHUB_CHECKSUM
        && body.iter().all(u8::is_ascii_alphanumeric)
    {
        return (prefix, Body::GithubClassic);
    }
    if structured && body.is_ascii() {
        return (prefix, Body::Structured(runs(body)));
    }
    (prefix, uniform(body))
}

/// One class for the whole body; trailing `=` padding is kept as padding.
fn uniform(body: &[u8]) -> Body {
    let core_len = body.len() - body.iter().rev().take_while(|&&b| b == b'=').count();
    let (core, padding) = (&body[..core_len], body.len() - core_len);
    match class_of(core) {
        Some(class) => Body::Uniform { class, len: core_len, padding },
        // Any other text: letters and digits, which no shell, URL or header treats
        // specially (punctuation such as `;`, `:` or `@` would break the places a
        // placeholder is pasted into). `=` is then an ordinary character.
        None => Body::Uniform { class: BASE62, len: body.len(), padding: 0 },
    }
}

/// The smallest alphabet class that covers `bytes`, if one does.
fn class_of(bytes: &[u8]) -> Option<&'static [u8]> {
    let all = |set: &[u8]| bytes.iter().all(|b| set.contains(b));
    [DIGITS, HEX_LOWER, HEX_UPPER, LOWER_ALNUM, UPPER_ALNUM, BASE62, BASE64URL, BASE64]
        .into_iter()
        .find(|set| all(set))
}

/// Runs of alphanumerics, each with its own class, between punctuation kept in place.
fn runs(body: &[u8]) -> Vec<Run> {
    let mut out = Vec::new();
    for piece in body.split_inclusive(|b| !b.is_ascii_alphanumeric()) {
        let (run, sep) = match piece.last() {
            Some(&last) if !last.is_ascii_alphanumeric() => (&piece[..piece.len() - 1], Some(last)),
            _ => (piece, None),
        };
        if !run.is_empty() {
            out.push(Run::Random(class_of(run).unwrap_or(BASE62), run.len()));
        }
        if let Some(sep) = sep {
            out.push(Run::Fixed(char::from(sep)));
        }
    }
    out
}

/// GitHub's checksum: CRC32 (IEEE) of the entropy, in base62, left-padded with `0` to 6.
fn github_checksum(entropy: &[u8]) -> String {
    let mut n = crc32(entropy);
    let mut digits = [b'0'; GITHUB_CHECKSUM];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// CRC-32/ISO-HDLC (the zlib one), bitwise: a few dozen bytes per placeholder.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A keyed byte stream (HMAC-SHA256 in counter mode) and unbiased picks from it.
struct Stream {
    mac: Hmac<Sha256>,
    block: [u8; 32],
    used: usize,
    counter: u32,
}

impl Stream {
    fn new(key: &[u8; 32], id: &str, len: usize, attempt: u32) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"secret-sidecar egress placeholder v1\0");
        mac.update(&(id.len() as u64).to_be_bytes());
        mac.update(id.as_bytes());
        mac.update(&(len as u64).to_be_bytes());
        mac.update(&attempt.to_be_bytes());
        Self { mac, block: [0; 32], used: 32, counter: 0 }
    }

    fn byte(&mut self) -> u8 {
        if self.used == self.block.len() {
            let mut mac = self.mac.clone();
            mac.update(&self.counter.to_be_bytes());
            self.block.copy_from_slice(&mac.finalize().into_bytes());
            self.counter += 1;
            self.used = 0;
        }
        self.used += 1;
        self.block[self.used - 1]
    }

    /// A uniformly chosen member of `class` (rejection sampling, no modulo bias).
    fn pick(&mut self, class: &[u8]) -> char {
        let n = class.len();
        let limit = 256 - 256 % n;
        loop {
            let b = usize::from(self.byte());
            if b < limit {
                return char::from(class[b % n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixed(byte: u8) -> Placeholders {
        Placeholders::new(Some(&SecretBox::new(Box::new([byte; 32]))))
    }

    fn github_valid(token: &str) -> bool {
        let body = &token[4..];
        body.len() == 36 && github_checksum(&body.as_bytes()[..30]) == body[30..]
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn github_checksum_is_zlib_crc32_in_base62_0_9_a_z_lowercase_last() {
        // Computed independently (zlib's CRC32, digits then upper then lower case), the way
        // public token scanners check real `ghp_` tokens.
        assert_eq!(github_checksum(b"abcdefghijklmnopqrstuvwxyz0123"), "2LolCm");
        assert_eq!(github_checksum(b"000000000000000000000000000000"), "2C8GjS");
    }

    #[test]
    fn well_known_shapes() {
        let p = fixed(1);
        let cases = [
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
            "glpat-abcdefghij0123456789",
            "sk-proj-abcDEF123_-xyzXYZ789abcDEF123",
            "sk-ant-api03-abcDEF123_-xyzXYZ789abcDEF123-AA",
            "xoxb-1234567890-0987654321-abcdefghijklmnopqrstuvwx",
            "AKIAIOSFODNN7EXAMPLE",
            "0123456789abcdef0123456789abcdef",
            "dGhpcyBpcyBhIHRlc3QgdmFsdWU=",
        ];
        for value in cases {
            let ph = p.make("sandbox/X", value.as_bytes());
            assert_eq!(ph.len(), value.len(), "{value}");
            assert_ne!(ph, value);
            let (prefix, _) = shape(value.as_bytes());
            assert!(ph.starts_with(prefix), "{value} -> {ph}");
        }
        let gh = p.make("sandbox/GITHUB_TOKEN", cases[0].as_bytes());
        assert!(gh.starts_with("ghp_") && github_valid(&gh), "{gh}");
        let pat = p.make("sandbox/GITHUB_TOKEN", cases[1].as_bytes());
        assert_eq!(pat.as_bytes()[33], b'_', "github_pat_ keeps its separator: {pat}");
        let slack = p.make("sandbox/SLACK_BOT_TOKEN", cases[5].as_bytes());
        assert_eq!(slack.matches('-').count(), 3, "{slack}");
        assert!(slack[5..15].bytes().all(|b| b.is_ascii_digit()), "{slack}");
        let hex = p.make("sandbox/X", cases[7].as_bytes());
        assert!(hex.bytes().all(|b| HEX_LOWER.contains(&b)), "{hex}");
        let b64 = p.make("sandbox/X", cases[8].as_bytes());
        assert!(b64.ends_with('=') && !b64[..b64.len() - 1].contains('='), "{b64}");
    }

    #[test]
    fn values_with_punctuation_get_letters_and_digits_only() {
        for v in [&b"ghp_with;shell|chars&and:url@bits/x"[..], b"pass.word!with(parens)=", b"a b\tc'd\"e$f`g"]
        {
            let p = fixed(3).make("sandbox/P", v);
            assert_eq!(p.len(), v.len());
            let body = p.strip_prefix("ghp_").unwrap_or(&p);
            assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()), "{p}");
        }
    }

    #[test]
    fn stable_per_key_distinct_per_secret_random_without_key() {
        let v = b"some-opaque-value-1234567890";
        assert_eq!(fixed(7).make("sandbox/A", v), fixed(7).make("sandbox/A", v));
        assert_ne!(fixed(7).make("sandbox/A", v), fixed(7).make("sandbox/B", v));
        assert_ne!(fixed(7).make("sandbox/A", v), fixed(7).make("conv/A", v));
        assert_ne!(fixed(7).make("sandbox/A", v), fixed(8).make("sandbox/A", v));
        assert_ne!(
            Placeholders::new(None).make("sandbox/A", v),
            Placeholders::new(None).make("sandbox/A", v)
        );
        // Not derived from the value: another value of the same shape gets the same one.
        assert_eq!(
            fixed(7).make("sandbox/A", v),
            fixed(7).make("sandbox/A", b"some-opaque-value-0987654321")
        );
    }

    proptest! {
        #[test]
        fn same_length_prefix_kept_never_equal(value in "(ghp_|sk-|xoxb-|glpat-|)[ -~]{16,80}", key in any::<u8>()) {
            let p = fixed(key);
            let ph = p.make("sandbox/N", value.as_bytes());
            prop_assert_eq!(ph.len(), value.len());
            prop_assert_ne!(ph.as_bytes(), value.as_bytes());
            let (prefix, _) = shape(value.as_bytes());
            prop_assert!(ph.starts_with(prefix));
            prop_assert!(ph.is_ascii());
        }

        #[test]
        fn github_classic_checksums_are_valid(body in "[A-Za-z0-9]{36}", key in any::<u8>()) {
            let value = format!("ghp_{body}");
            let ph = fixed(key).make("sandbox/GITHUB_TOKEN", value.as_bytes());
            prop_assert!(github_valid(&ph));
            prop_assert_ne!(ph, value);
        }

        #[test]
        fn small_classes_never_collide_with_the_value(value in "[0-9]{16,20}") {
            let ph = fixed(3).make("sandbox/PIN", value.as_bytes());
            prop_assert_ne!(&ph, &value);
            prop_assert!(ph.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
