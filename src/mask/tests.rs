//! Masking as a whole: a table of cases through the one-shot masker, every
//! case streamed at every chunk size, the mask set's bounds, and property
//! tests, including values split between the stable and recent layers.

use std::sync::Arc;

use super::matcher::{self, ONE_SHOT_BLOCK, emit};
use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

const H: &str = "<secret-hidden>";

enum Source {
    /// Values inserted into a `MaskSet` with this minimum length.
    Values(usize, Vec<Vec<u8>>),
    /// Raw patterns compiled as they are.
    Patterns(Vec<Vec<u8>>),
}

enum Expect {
    Exact(Vec<u8>),
    /// Some region is hidden and none of these survive.
    Gone(Vec<Vec<u8>>),
}

struct Case {
    name: &'static str,
    source: Source,
    input: Vec<u8>,
    expect: Expect,
}

fn values(min_len: usize, v: &[&[u8]]) -> Source {
    Source::Values(min_len, v.iter().map(|x| x.to_vec()).collect())
}

fn exact(s: impl AsRef<[u8]>) -> Expect {
    Expect::Exact(s.as_ref().to_vec())
}

fn case(name: &'static str, source: Source, input: impl AsRef<[u8]>, expect: Expect) -> Case {
    Case { name, source, input: input.as_ref().to_vec(), expect }
}

fn masker_for(source: &Source) -> Arc<Masker> {
    match source {
        Source::Values(min_len, vals) => {
            let set = MaskSet::new(*min_len);
            for (i, v) in vals.iter().enumerate() {
                // Too-short values are refused; the case then checks they pass through.
                let _ = set.insert(&format!("scope/V{i}"), v);
            }
            set.masker()
        }
        Source::Patterns(p) => Arc::new(Masker::from_patterns(p)),
    }
}

/// The same patterns split between two layers, as the mask set holds them
/// while values recorded after a merge are still in the recent layer: every
/// other value (or pattern) goes to the first.
fn layered_masker_for(source: &Source) -> Arc<Masker> {
    match source {
        Source::Values(min_len, vals) => {
            let set = MaskSet::new(*min_len);
            for half in [0, 1] {
                for (i, v) in vals.iter().enumerate().filter(|(i, _)| i % 2 == half) {
                    let _ = set.insert(&format!("scope/V{i}"), v);
                }
                if half == 0 {
                    set.compact();
                }
            }
            set.masker()
        }
        Source::Patterns(p) => {
            let layers = [0, 1]
                .into_iter()
                .filter_map(|half| {
                    let part: Vec<&[u8]> = p
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % 2 == half)
                        .map(|(_, p)| p.as_slice())
                        .collect();
                    matcher::Layer::build(&part).expect("build").map(Arc::new)
                })
                .collect();
            Arc::new(Masker::from_layers(layers))
        }
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALNUM[(x % 62) as usize]
        })
        .collect()
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        case(
            "start and end",
            values(4, &[b"secretvalue"]),
            "secretvalue in the middle secretvalue",
            exact(format!("{H} in the middle {H}")),
        ),
        case(
            "prefix pattern",
            Source::Patterns(vec![b"abc".to_vec(), b"abcdef".to_vec()]),
            "v=abcdef",
            exact(format!("v={H}")),
        ),
        case(
            "overlapping chain",
            Source::Patterns(vec![b"this is the end".to_vec(), b"the end foobar".to_vec()]),
            "this is the end foobar",
            exact(H),
        ),
        case(
            "touching occurrences merge",
            Source::Patterns(vec![b"abc".to_vec()]),
            "abcabc x abc",
            exact(format!("{H} x {H}")),
        ),
        case(
            "wrapped base64",
            values(8, &[&pseudo_random(120, 7)]),
            format!("-----\n{}\n-----", wrap76(&STANDARD.encode(pseudo_random(120, 7)), "\n")),
            exact(format!("-----\n{H}\n-----")),
        ),
        case(
            "wrapped base64 crlf",
            values(8, &[&pseudo_random(120, 7)]),
            format!("-----\r\n{}\r\n", wrap76(&STANDARD.encode(pseudo_random(120, 7)), "\r\n")),
            exact(format!("-----\r\n{H}\r\n")),
        ),
        case(
            "multi-line value, lines printed apart",
            values(4, &[b"line-one-secret\nline-two-secret\n"]),
            "a line-one-secret b\nline-two-secret\n",
            exact(format!("a {H} b\n{H}\n")),
        ),
        case(
            "multi-line value printed with crlf",
            values(4, &[b"line-one-secret\nline-two-secret\n"]),
            "line-one-secret\r\nline-two-secret\r\n",
            exact(format!("{H}\r\n{H}\r\n")),
        ),
        case(
            "trailing newline stripped",
            values(4, &[b"tokenvalue123\n"]),
            "x=tokenvalue123;",
            exact(format!("x={H};")),
        ),
        case("below min length is not masked", values(4, &[b"abc"]), "abc abc", exact("abc abc")),
        case(
            "invalid utf-8 input",
            values(4, &[b"secretvalue"]),
            b"\xff\xfe secretvalue \xc3",
            exact(b"\xff\xfe <secret-hidden> \xc3"),
        ),
        case(
            "invalid utf-8 value",
            values(4, &[b"sec\xffret"]),
            b"x sec\xffret y",
            exact(b"x <secret-hidden> y"),
        ),
        case("empty input", values(4, &[b"secretvalue"]), "", exact("")),
        case("no patterns", values(4, &[]), "nothing to hide", exact("nothing to hide")),
        case(
            "runs of a pattern",
            Source::Patterns(vec![b"aaaa".to_vec()]),
            format!("x{}y aaa aaaab", "a".repeat(50)),
            exact(format!("x{H}y aaa {H}b")),
        ),
    ];
    let fancy = r#"pässwörd☃ "q/r+s""#;
    for (name, encoded) in [
        ("percent", "p%C3%A4ssw%C3%B6rd%E2%98%83%20%22q%2Fr%2Bs%22"),
        ("percent keeping slash", "p%C3%A4ssw%C3%B6rd%E2%98%83%20%22q/r%2Bs%22"),
        ("form encoding", "p%C3%A4ssw%C3%B6rd%E2%98%83+%22q%2Fr%2Bs%22"),
        ("percent lower hex", "p%c3%a4ssw%c3%b6rd%e2%98%83%20%22q%2fr%2bs%22"),
        ("json ascii", r#"p\u00e4ssw\u00f6rd\u2603 \"q/r+s\""#),
        ("json ascii upper", r#"p\u00E4ssw\u00F6rd\u2603 \"q/r+s\""#),
        ("json utf-8", r#"pässwörd☃ \"q/r+s\""#),
        ("json escaped slash", r#"p\u00e4ssw\u00f6rd\u2603 \"q\/r+s\""#),
    ] {
        cases.push(case(
            name,
            values(8, &[fancy.as_bytes()]),
            format!("{{\"k\":\"{encoded}\"}}"),
            exact(format!("{{\"k\":\"{H}\"}}")),
        ));
    }
    let value = b"hunter2-is-the-password".to_vec();
    for prefix in [&b""[..], b"x", b"xy", b"xyz", b"wxyz"] {
        let mut blob = prefix.to_vec();
        blob.extend_from_slice(&value);
        blob.extend_from_slice(b"-and-then-some-more");
        let enc = STANDARD.encode(&blob);
        let k = prefix.len() % 3;
        let first = prefix.len() / 3 * 4 + (8 * k).div_ceil(6);
        let end = prefix.len() / 3 * 4 + 8 * (k + value.len()) / 6;
        cases.push(case(
            "base64 inside longer base64",
            values(8, &[&value]),
            format!("data: {enc}\n"),
            Expect::Gone(vec![enc.as_bytes()[first..end].to_vec()]),
        ));
    }
    let big = pseudo_random(16 * 1024, 99);
    let mut input = b"pre ".to_vec();
    input.extend_from_slice(&big);
    input.extend_from_slice(b" post");
    cases.push(case("16 KiB value", values(8, &[&big]), input, exact(format!("pre {H} post"))));
    cases
}

fn wrap76(s: &str, sep: &str) -> String {
    s.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(sep)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn stream(masker: &Arc<Masker>, input: &[u8], chunk: usize) -> Vec<u8> {
    let mut s = StreamMasker::new(Arc::clone(masker));
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        out.extend(s.push(c).expect("push"));
    }
    out.extend(s.finish().expect("finish"));
    out
}

#[test]
fn table() {
    for c in cases() {
        let masker = masker_for(&c.source);
        let out = masker.mask(&c.input).expect("mask");
        let layered = layered_masker_for(&c.source).mask(&c.input).expect("mask");
        assert_eq!(layered, out, "case {}: two layers hide what one does", c.name);
        match &c.expect {
            Expect::Exact(want) => {
                assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want), "case {}", c.name)
            }
            Expect::Gone(gone) => {
                assert!(contains(&out, REPLACEMENT), "case {}", c.name);
                for g in gone {
                    assert!(!contains(&out, g), "case {}: {}", c.name, String::from_utf8_lossy(&out));
                }
            }
        }
    }
}

#[test]
fn stream_sweep_equals_one_shot() {
    for c in cases() {
        let masker = masker_for(&c.source);
        let want = masker.mask(&c.input).expect("mask");
        let len = c.input.len();
        // Every chunk size for ordinary cases; a sample for the 16 KiB one,
        // where size 1 would rescan a 16 KiB window per byte.
        let sizes: Vec<usize> = if len <= 1024 {
            (1..=len + 1).collect()
        } else {
            vec![1000, 4096, 8191, len / 2, len - 1, len, len + 1]
        };
        let layered = layered_masker_for(&c.source);
        for size in sizes {
            assert_eq!(stream(&masker, &c.input, size), want, "case {} chunk {size}", c.name);
            assert_eq!(stream(&layered, &c.input, size), want, "case {} chunk {size}, two layers", c.name);
        }
    }
}

#[test]
fn big_value_split_in_two_pushes() {
    let big = pseudo_random(16 * 1024, 5);
    let set = MaskSet::new(8);
    set.insert("s/BIG", &big).expect("insert");
    let mut s = StreamMasker::new(set.masker());
    let (a, b) = big.split_at(9000);
    let mut out = s.push(b"start ").expect("push");
    out.extend(s.push(a).expect("push"));
    out.extend(s.push(b).expect("push"));
    out.extend(s.finish().expect("finish"));
    assert_eq!(out, format!("start {H}").into_bytes());
}

#[test]
fn long_hidden_run_streams_in_bounded_memory() {
    let masker = Arc::new(Masker::from_patterns(["aaaa"]));
    let mut s = StreamMasker::new(Arc::clone(&masker));
    let chunk = vec![b'a'; 64 * 1024];
    let mut out = Vec::new();
    for _ in 0..64 {
        out.extend(s.push(&chunk).expect("push"));
        assert!(s.held_len() < 8);
    }
    out.extend(s.push(b"aab").expect("push"));
    out.extend(s.finish().expect("finish"));
    assert_eq!(out, format!("{H}b").into_bytes());
}

/// Whole-input reference: all regions at once, no blocks.
fn reference(masker: &Masker, input: &[u8]) -> Vec<u8> {
    let Ok(Some(c)) = masker.compiled() else { return input.to_vec() };
    let regions = c.regions(input).expect("regions");
    let mut out = Vec::new();
    emit(input, &regions, &mut None, input.len(), &mut out).expect("emit");
    out
}

#[test]
fn one_shot_blocks_match_whole_input_search() {
    let value = pseudo_random(40, 21);
    let set = MaskSet::new(8);
    set.insert("s/B", &value).expect("insert");
    let masker = set.masker();
    let runs = Masker::from_patterns(["aaaa", "aab"]);
    let b64 = STANDARD.encode(&value);
    for shift in [0usize, 1, 20, 39, 40, 41, 55, 56, 57] {
        let mut input = vec![b'.'; 3 * ONE_SHOT_BLOCK];
        for k in 1..3 {
            let at = k * ONE_SHOT_BLOCK - shift;
            input[at..at + value.len()].copy_from_slice(&value);
            input[at + 100..at + 100 + b64.len()].copy_from_slice(b64.as_bytes());
            // Adjacent occurrences merge even across a block edge.
            input[at + value.len()..at + 2 * value.len()].copy_from_slice(&value);
        }
        let out = masker.mask(&input).expect("mask");
        assert_eq!(out, reference(&masker, &input), "shift {shift}");
        assert!(!contains(&out, &value) && !contains(&out, b64.as_bytes()));
        let mut runs_input = vec![b'a'; 2 * ONE_SHOT_BLOCK + shift];
        runs_input.extend_from_slice(b"b aab");
        assert_eq!(runs.mask(&runs_input).expect("mask"), format!("{H} {H}").into_bytes());
    }
}

#[test]
fn rotated_values_all_hidden() {
    let set = MaskSet::new(4);
    set.insert("s/TOKEN", b"old-token-value").expect("insert");
    set.insert("s/TOKEN", b"new-token-value").expect("insert");
    let out = set.masker().mask(b"old-token-value new-token-value").expect("mask");
    assert_eq!(out, format!("{H} {H}").into_bytes());
    assert_eq!(set.value_count(), 2);
}

#[test]
fn reinsert_is_a_noop() {
    let set = MaskSet::new(4);
    set.insert("s/A", b"value-one").expect("insert");
    let before = set.masker();
    set.insert("s/A", b"value-one").expect("insert");
    assert!(Arc::ptr_eq(&before, &set.masker()));
    assert_eq!(set.value_count(), 1);
}

#[test]
fn history_per_key_is_bounded() {
    let set = MaskSet::new(4);
    let vals: Vec<String> = (0..10).map(|i| format!("rotated-value-{i:02}")).collect();
    for v in &vals {
        set.insert("s/ROT", v.as_bytes()).expect("insert");
    }
    assert_eq!(set.value_count(), MAX_PREVIOUS_VALUES + 1);
    let m = set.masker();
    assert_eq!(m.mask(vals[0].as_bytes()).expect("mask"), vals[0].as_bytes());
    for v in &vals[1..] {
        assert_eq!(m.mask(v.as_bytes()).expect("mask"), REPLACEMENT);
    }
}

#[test]
fn pattern_bytes_are_bounded() {
    // Values above the encoding threshold yield only themselves, so five
    // 1 MiB values exceed the 4 MiB default budget by one. A shared prefix
    // keeps the automaton (and so the test) small.
    let common = pseudo_random(1024 * 1024 - 16, 10);
    let vals: Vec<Vec<u8>> =
        (0..5).map(|i| [common.as_slice(), &pseudo_random(16, 11 + i)].concat()).collect();
    let keys: Vec<String> = (0..5).map(|i| format!("s/BIG{i}")).collect();
    let set = MaskSet::new(8);
    set.extend(keys.iter().map(String::as_str).zip(vals.iter().map(Vec::as_slice))).expect("extend");
    assert!(set.pattern_bytes() <= DEFAULT_MAX_PATTERN_BYTES);
    assert_eq!(set.value_count(), 4);
    let m = set.masker();
    assert_eq!(m.mask(&vals[0]).expect("mask"), vals[0]);
    assert_eq!(m.mask(&vals[4]).expect("mask"), REPLACEMENT);
    // A value that could never fit is refused rather than silently dropped.
    let small = MaskSet::with_max_pattern_bytes(4, 100);
    assert!(matches!(small.insert("s/X", &pseudo_random(200, 3)), Err(MaskError::TooLarge { .. })));
}

#[test]
fn min_len_filtering() {
    let set = MaskSet::new(4);
    assert!(!set.is_maskable(b"abc"));
    assert!(!is_maskable(b"abc", 4));
    assert!(matches!(set.insert("s/S", b"abc"), Err(MaskError::TooShort { .. })));
    assert_eq!(set.value_count(), 0);
    assert_eq!(set.masker().mask(b"abc").expect("mask"), b"abc");
}

#[test]
fn failed_masker_fails_closed() {
    let m = Arc::new(Masker::failed(MaskError::Unavailable("test".into())));
    assert!(m.mask(b"anything").is_err());
    let mut out = b"kept".to_vec();
    assert!(m.mask_into(b"anything", &mut out).is_err());
    assert_eq!(out, b"kept");
    let mut s = StreamMasker::new(Arc::clone(&m));
    assert!(s.push(b"anything").is_err());
    assert!(s.finish().is_err());
}

#[test]
fn debug_never_shows_values() {
    let set = MaskSet::new(4);
    set.insert("s/DBG", b"debug-secret-value").expect("insert");
    let mut s = StreamMasker::new(set.masker());
    let _ = s.push(b"xx debug-secret-va").expect("push");
    for text in [format!("{set:?}"), format!("{:?}", set.masker()), format!("{s:?}")] {
        assert!(!text.contains("debug-secret"), "{text}");
        assert!(!text.contains("ZGVidWct"), "{text}"); // base64 prefix
    }
}

#[test]
fn utf8_never_split_in_emitted_chunks() {
    let set = MaskSet::new(4);
    set.insert("s/U", "pässwörd☃".as_bytes()).expect("insert");
    let masker = set.masker();
    let input = "ünïcödé ☃☃ text pässwörd☃ more 😀 end ü".as_bytes();
    for size in 1..=input.len() {
        let mut s = StreamMasker::new(Arc::clone(&masker));
        for c in input.chunks(size) {
            let out = s.push(c).expect("push");
            assert!(std::str::from_utf8(&out).is_ok(), "chunk size {size}");
        }
        assert!(std::str::from_utf8(&s.finish().expect("finish")).is_ok());
    }
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MaskSet>();
    assert_send_sync::<Masker>();
    assert_send_sync::<StreamMasker>();
    let set = Arc::new(MaskSet::new(4));
    let writer = {
        let set = Arc::clone(&set);
        std::thread::spawn(move || {
            for i in 0..20 {
                set.insert(&format!("s/T{i}"), format!("thread-value-{i:03}").as_bytes()).expect("insert");
            }
        })
    };
    for _ in 0..20 {
        let _ = set.masker().mask(b"thread-value-001").expect("mask");
    }
    writer.join().expect("writer");
    assert_eq!(set.masker().mask(b"thread-value-019").expect("mask"), REPLACEMENT);
}

fn split_by(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut rest = input;
    for &c in cuts {
        let (a, b) = rest.split_at(c.min(rest.len()));
        parts.push(a.to_vec());
        rest = b;
    }
    parts.push(rest.to_vec());
    parts
}

proptest! {
    #[test]
    fn stream_matches_one_shot_and_hides_everything(
        // Lengths up to 14 exercise both the plain search (shortest
        // pattern under 6) and the sampling filter.
        vals in prop::collection::vec("[ab]{1,14}", 1..4),
        segments in prop::collection::vec((0usize..5, "[ab ]{0,8}"), 0..14),
        cuts in prop::collection::vec(0usize..24, 0..10),
        derived in any::<bool>(),
        split in 0usize..4,
    ) {
        // Junk interleaved with the values themselves, so matches are common.
        let mut text = String::new();
        for (i, junk) in &segments {
            text.push_str(junk);
            text.push_str(vals.get(*i).map_or("", String::as_str));
        }
        // The first `split` values go to the stable layer, the rest stay recent.
        let masker = if derived {
            let set = MaskSet::new(1);
            for (i, v) in vals.iter().enumerate() {
                if i == split {
                    set.compact();
                }
                let _ = set.insert(&format!("p/{i}"), v.as_bytes());
            }
            set.masker()
        } else {
            Arc::new(Masker::from_patterns(&vals))
        };
        let input = text.as_bytes();
        let want = masker.mask(input).expect("mask");
        if derived {
            // Layered or not, the set hides what one automaton of all its patterns hides.
            let all: Vec<Vec<u8>> =
                vals.iter().flat_map(|v| derive_patterns(v.as_bytes(), 1)).map(|p| p.to_vec()).collect();
            prop_assert_eq!(&Masker::from_patterns(&all).mask(input).expect("mask"), &want);
        }
        let mut s = StreamMasker::new(Arc::clone(&masker));
        let mut got = Vec::new();
        for part in split_by(input, &cuts) {
            got.extend(s.push(&part).expect("push"));
        }
        got.extend(s.finish().expect("finish"));
        prop_assert_eq!(&got, &want);
        for v in &vals {
            prop_assert!(!contains(&want, v.as_bytes()));
        }
    }
}

#[test]
fn one_compilation_per_update() {
    let set = MaskSet::new(4);
    let values: Vec<Vec<u8>> = (0..200).map(|i| pseudo_random(24, 1000 + i)).collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("s/MANY{i}")).collect();
    set.extend(keys.iter().map(String::as_str).zip(values.iter().map(Vec::as_slice))).expect("extend");
    assert_eq!(set.stats().builds, 1);
    let m = set.masker();
    for v in &values {
        assert_eq!(m.mask(v).expect("mask"), REPLACEMENT);
    }
    // Values already held need no compilation.
    set.extend(keys.iter().map(String::as_str).zip(values.iter().map(Vec::as_slice))).expect("extend");
    assert_eq!(set.stats().builds, 1);
}

#[test]
fn recent_values_sit_beside_the_stable_layer() {
    let set = MaskSet::new(4);
    set.insert("s/OLD", b"old-value-in-stable").expect("insert");
    set.compact();
    assert_eq!(set.masker().layer_count(), 1);
    // Overlapping matches across the layers still merge into one region.
    set.insert("s/NEW", b"stable foobar").expect("insert");
    let m = set.masker();
    assert_eq!(m.layer_count(), 2);
    assert_eq!(m.mask(b"x old-value-in-stable foobar y").expect("mask"), format!("x {H} y").into_bytes());
    assert_eq!(stream(&m, b"x old-value-in-stable foobar y", 3), format!("x {H} y").into_bytes());
}

#[test]
fn values_recorded_concurrently_are_hidden_when_each_call_returns() {
    let set = Arc::new(MaskSet::new(4));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let set = Arc::clone(&set);
            std::thread::spawn(move || {
                for i in 0..50 {
                    // Threads record the same values under their own keys, so a
                    // value is often already staged by another thread whose
                    // compilation is still running.
                    let value = format!("concurrent-value-{i:03}");
                    set.insert(&format!("t{t}/V{i}"), value.as_bytes()).expect("insert");
                    assert_eq!(set.masker().mask(value.as_bytes()).expect("mask"), REPLACEMENT);
                    if t == 0 && i % 10 == 0 {
                        set.compact();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(set.value_count(), 50);
}

#[test]
fn a_large_recent_layer_is_merged_in_the_background() {
    let set = MaskSet::new(4);
    // Well over the recent layer's 64 KiB: one update, then a background merge.
    let values: Vec<Vec<u8>> = (0..400).map(|i| pseudo_random(200, 5000 + i)).collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("s/BG{i}")).collect();
    set.extend(keys.iter().map(String::as_str).zip(values.iter().map(Vec::as_slice))).expect("extend");
    set.settle();
    assert!(set.stats().merges >= 1);
    set.insert("s/AFTER", b"value-after-the-merge").expect("insert");
    let m = set.masker();
    assert_eq!(m.layer_count(), 2);
    for v in values.iter().map(Vec::as_slice).chain([&b"value-after-the-merge"[..]]) {
        assert_eq!(m.mask(v).expect("mask"), REPLACEMENT);
    }
}

/// The longest suffix of `text` that some pattern starts with, by brute force.
fn pattern_prefix_suffix(patterns: &[String], text: &[u8]) -> usize {
    (0..=text.len())
        .rev()
        .find(|&k| patterns.iter().any(|p| p.as_bytes().starts_with(&text[text.len() - k..])))
        .unwrap_or(0)
}

proptest! {
    #[test]
    fn stream_holds_back_only_what_could_still_begin_a_match(
        vals in prop::collection::vec("[ab]{2,12}", 1..4),
        chunks in prop::collection::vec("[abc]{0,10}", 1..12),
    ) {
        let masker = Arc::new(Masker::from_patterns(&vals));
        let mut s = StreamMasker::new(Arc::clone(&masker));
        let mut seen = Vec::new();
        for chunk in &chunks {
            seen.extend_from_slice(chunk.as_bytes());
            s.push(chunk.as_bytes()).expect("push");
            // ASCII input: no partial UTF-8 sequence is ever held.
            let bound = pattern_prefix_suffix(&vals, &seen);
            prop_assert!(s.held_len() <= bound, "held {} > {} after {:?}", s.held_len(), bound, String::from_utf8_lossy(&seen));
        }
    }
}

#[test]
fn a_line_goes_out_at_once_with_a_long_secret_and_many_others() {
    let set = MaskSet::new(4);
    let big = pseudo_random(16 * 1024, 77);
    set.insert("s/BIG", &big).expect("insert");
    let many: Vec<Vec<u8>> = (0..1000).map(|i| pseudo_random(24, 5000 + i)).collect();
    let keys: Vec<String> = (0..many.len()).map(|i| format!("s/M{i}")).collect();
    set.extend(keys.iter().map(String::as_str).zip(many.iter().map(Vec::as_slice))).expect("extend");
    let mut s = StreamMasker::new(set.masker());
    assert_eq!(s.push(b"first\n").expect("push"), b"first\n");
    assert_eq!(s.held_len(), 0);
    // What a pattern starts with waits, and the rest of the line does not.
    let mut out = s.push(b"second ").expect("push");
    out.extend(s.push(&big[..100]).expect("push"));
    assert_eq!(out, b"second ");
    assert_eq!(s.held_len(), 100);
    out.extend(s.push(&big[100..]).expect("push"));
    out.extend(s.finish().expect("finish"));
    assert_eq!(out, format!("second {H}").into_bytes());
}
