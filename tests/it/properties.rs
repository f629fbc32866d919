//! The fuzz targets' properties (`fuzz/src/lib.rs`) as proptests, so the regular test run
//! carries them: the streaming masker in any chunking equals one-shot masking; no
//! registered value at or above the minimum length survives masking; and descriptor
//! parsing never panics and never puts a secret-bearing string in an error.

use std::sync::Arc;

use proptest::prelude::*;
use secret_sidecar::mask::{MaskSet, REPLACEMENT, StreamMasker};
use secret_sidecar::secrets::origin::{Origin, OriginPolicy};
use secret_sidecar::secrets::source::{ParseContext, parse_update};
use serde_json::{Map, Value, json};

/// `--mask-min-length` default.
const MIN_LEN: usize = 4;
/// Put into every secret-bearing string of a descriptor.
const MARK: &str = "zq9mark";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The pieces of masked output between replacements: text that came from the input as is.
fn unmasked_pieces(out: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i + REPLACEMENT.len() <= out.len() {
        if &out[i..i + REPLACEMENT.len()] == REPLACEMENT {
            pieces.push(&out[start..i]);
            i += REPLACEMENT.len();
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&out[start..]);
    pieces
}

/// Values: arbitrary bytes, or a small alphabet full of encoding-relevant bytes so values
/// overlap each other and their derived encodings.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        "[ab\n=+/%<>-]{0,12}".prop_map(String::into_bytes),
        "[a-z]{4,10}".prop_map(|s| format!("{s}\r\n").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn chunked_masking_equals_whole_and_no_value_survives(
        values in prop::collection::vec(value(), 1..5),
        segments in prop::collection::vec((0usize..6, prop::collection::vec(any::<u8>(), 0..6)), 0..12),
        cuts in prop::collection::vec(0usize..40, 0..12),
    ) {
        let set = MaskSet::new(MIN_LEN);
        let mut held = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if set.insert(&format!("prop/V{i}"), v).is_ok() {
                held.push(v.clone());
            }
        }
        // Junk and values interleaved, so matches, overlaps and near misses are common.
        let mut text = Vec::new();
        for (i, junk) in &segments {
            text.extend_from_slice(junk);
            if let Some(v) = values.get(*i) {
                text.extend_from_slice(v);
            }
        }
        let masker = set.masker();
        let whole = masker.mask(&text).expect("mask");
        let mut stream = StreamMasker::new(Arc::clone(&masker));
        let mut streamed = Vec::new();
        let mut rest = text.as_slice();
        for &cut in &cuts {
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            streamed.extend(stream.push(chunk).expect("push"));
            rest = tail;
        }
        streamed.extend(stream.push(rest).expect("push"));
        streamed.extend(stream.finish().expect("finish"));
        prop_assert_eq!(&streamed, &whole);
        let pieces = unmasked_pieces(&whole);
        for v in held.iter().filter(|v| v.len() >= MIN_LEN) {
            prop_assert!(!pieces.iter().any(|p| contains(p, v)), "value {:?} survives in {:?}", v, whole);
        }
    }
}

/// A parse context like a configured service's.
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

/// Appends [`MARK`] to every secret-bearing string (the URL's in its query).
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

/// JSON leaves drawn from what descriptors hold, plus junk.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..100_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "StaticSecret",
            "LookupSecret",
            "",
            "**********",
            " ",
            "https://app.example.dev/api/v1/sandboxes/s/settings/secrets/A",
            "http://127.0.0.1:8000/x",
            "/api/x",
            "//app.example.dev/x",
            "https://evil.example/x",
            "SESSION_API_KEY",
            "X-Token",
            "Host",
            "a\u{0}b",
            "\r\n",
            "é☃",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn entry() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec![
        "kind",
        "value",
        "url",
        "headers",
        "env_headers",
        "ttl_seconds",
        "description",
        "other",
    ]);
    let nested = leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z_-]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        leaf(),
        prop::collection::btree_map(field, nested, 0..6).prop_map(|m| {
            Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn descriptor_parsing_never_panics_nor_echoes_a_value(
        entries in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,6}|.{0,6}", entry(), 0..4),
    ) {
        let body = json!({"secrets": entries.into_iter().collect::<Map<_, _>>()});
        let ctx = context();
        let _ = parse_update(&body, &ctx);
        prop_assume!(!body.to_string().contains(MARK));
        let mut marked = body;
        mark_values(&mut marked);
        if let Err(e) = parse_update(&marked, &ctx) {
            let shown = format!("{e} {:?}", e.loc);
            prop_assert!(!shown.contains(MARK), "{}", shown);
        }
    }

}

/// The `egress_head` fuzz target's property, the same file the fuzz crate builds.
#[path = "../../fuzz/src/head.rs"]
mod head;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Egress request heads: no panic; a real value only where a bound binding allows it;
    /// every other field, placeholders included, unchanged; leftovers reported.
    #[test]
    fn egress_head_substitutes_only_where_bound(
        // Small bytes pick table pieces (placeholders, schemes, separators), so most heads reach
        // a substitution place.
        data in prop::collection::vec(prop_oneof![3 => 0u8..24, 1 => any::<u8>()], 0..160),
    ) {
        head::egress_head(&data);
    }
}

/// Heads the property must accept, one reaching two substitution places.
#[test]
fn egress_head_known_cases() {
    // Host api.test.example; one grant bound there with every header and query place; GET;
    // target "/" + placeholder + "?key=" + placeholder; "authorization: Bearer " + placeholder.
    let case = [0u8, 0, 1, 7, 7, 0, 1, 0, 1, 2, 16, 0, 1, 0, 1, 1, 0];
    assert_eq!(head::egress_head(&case), 2, "Authorization and the named parameter");
    // The same head to a host no binding covers: nothing replaced.
    let mut unbound = case;
    unbound[0] = 3;
    assert_eq!(head::egress_head(&unbound), 0);
}
