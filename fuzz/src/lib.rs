//! The properties the fuzz targets check, one function per target, so each target in
//! `fuzz_targets/` is a thin `fuzz_target!` around one of them. The same properties run as
//! proptests in the main crate's regular test suite (`tests/it/properties.rs`).
//!
//! A property that fails panics with a message that names the property, never the input's
//! secret parts (libFuzzer keeps the input itself as the crash artifact).

mod head;

use std::sync::Arc;

use arbitrary::Arbitrary;
use secret_sidecar::mask::{MaskSet, REPLACEMENT, StreamMasker};
use secret_sidecar::secrets::origin::{Origin, OriginPolicy};
use secret_sidecar::secrets::source::{ParseContext, parse_update};
use serde_json::Value;

pub use head::egress_head;

/// Put into every secret-bearing string of a descriptor (static values, header values, the
/// query of lookup URLs); an error that contains it has echoed a value.
const MARK: &str = "zq9mark";

/// The masking minimum length these targets use (the `--mask-min-length` default).
pub const MIN_LEN: usize = 4;

/// A parse context like a configured service's: one settings origin, one other allowed
/// origin, a base for relative URLs, one variable `env_headers` may read.
fn context() -> ParseContext {
    let origin = |s: &str| Origin::parse(s).expect("a valid origin");
    ParseContext {
        policy: OriginPolicy::new(
            vec![origin("https://app.example.dev")],
            vec![origin("http://127.0.0.1:8000")],
        ),
        internal_base: Some("http://127.0.0.1:8000".parse().expect("a valid URL")),
        allowed_env_headers: vec!["SESSION_API_KEY".into()],
        max_value_bytes: 64 * 1024,
    }
}

/// Descriptor parsing: any bytes, parsed as an update body, never panic; and once every
/// secret-bearing string carries a marker, no error shows the marker.
pub fn descriptor(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let ctx = context();
    let _ = parse_update(&body, &ctx);
    if contains(data, MARK.as_bytes()) {
        return;
    }
    let mut marked = body;
    mark_values(&mut marked);
    if let Err(e) = parse_update(&marked, &ctx) {
        let shown = format!("{e} {:?}", e.loc);
        assert!(!shown.contains(MARK), "a descriptor error echoes a value");
    }
}

/// Appends [`MARK`] to every string a secret may hide in: bare-string entries, `value`,
/// header values, and (in its query, so the origin is untouched) `url`.
fn mark_values(body: &mut Value) {
    let Some(secrets) = body.get_mut("secrets").and_then(Value::as_object_mut) else { return };
    for entry in secrets.values_mut() {
        match entry {
            Value::String(s) => s.push_str(MARK),
            Value::Object(fields) => {
                if let Some(Value::String(v)) = fields.get_mut("value") {
                    v.push_str(MARK);
                }
                if let Some(Value::String(u)) = fields.get_mut("url") {
                    u.push(if u.contains('?') { '&' } else { '?' });
                    u.push_str(MARK);
                }
                if let Some(Value::Object(headers)) = fields.get_mut("headers") {
                    for v in headers.values_mut() {
                        if let Value::String(v) = v {
                            v.push_str(MARK);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// One masking case: values to register, a text, and where to cut it into chunks.
#[derive(Arbitrary, Debug)]
pub struct MaskCase {
    pub values: Vec<Vec<u8>>,
    pub text: Vec<u8>,
    pub cuts: Vec<u8>,
}

/// The masker: streaming in the case's chunks equals masking whole, and no registered value
/// of at least [`MIN_LEN`] bytes survives outside a replacement.
pub fn masking(case: &MaskCase) {
    let set = MaskSet::new(MIN_LEN);
    let mut held = Vec::new();
    for (i, v) in case.values.iter().take(8).enumerate() {
        if set.insert(&format!("fuzz/V{i}"), v).is_ok() {
            held.push(v.as_slice());
        }
    }
    let masker = set.masker();
    let Ok(whole) = masker.mask(&case.text) else { return };
    let mut stream = StreamMasker::new(Arc::clone(&masker));
    let mut streamed = Vec::new();
    let mut rest = case.text.as_slice();
    for &cut in &case.cuts {
        let (chunk, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        streamed.extend(stream.push(chunk).expect("a masker that masked whole streams"));
        rest = tail;
    }
    streamed.extend(stream.push(rest).expect("a masker that masked whole streams"));
    streamed.extend(stream.finish().expect("a masker that masked whole streams"));
    assert!(streamed == whole, "streamed output differs from one-shot output");
    assert!(survivors(&whole, &held).is_none(), "a registered value survives masking");
}

/// The first value (its index) at least [`MIN_LEN`] long found in `out` between
/// replacements. An occurrence that spans a replacement is made of it, not of the input.
pub fn survivors(out: &[u8], values: &[&[u8]]) -> Option<usize> {
    let pieces = split_on(out, REPLACEMENT);
    values.iter().position(|v| v.len() >= MIN_LEN && pieces.iter().any(|p| contains(p, v)))
}

fn split_on<'a>(hay: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= hay.len() {
        if &hay[i..i + sep.len()] == sep {
            pieces.push(&hay[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&hay[start..]);
    pieces
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
