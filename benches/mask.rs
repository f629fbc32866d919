//! Masking throughput: 1,000 random 20–40 byte alphanumeric secrets (and all
//! their derived encodings) over 64 MiB of log-like output with a few real
//! occurrences, one-shot and streamed in 64 KiB chunks, against a naive
//! "replace each value in turn" baseline.
//!
//! Run with `cargo bench --bench mask`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secret_sidecar::mask;

const SECRETS: usize = 1_000;
const MIN_LEN: usize = 8;
const INPUT_BYTES: usize = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// The naive baseline makes one pass per value, so it runs on a prefix.
const NAIVE_BYTES: usize = 4 * 1024 * 1024;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

fn secrets(rng: &mut Rng) -> Vec<Vec<u8>> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..SECRETS)
        .map(|_| {
            let len = 20 + rng.below(21);
            (0..len).map(|_| ALNUM[rng.below(ALNUM.len())]).collect()
        })
        .collect()
}

fn log_text(rng: &mut Rng, secrets: &[Vec<u8>], patterns: &[Vec<u8>]) -> Vec<u8> {
    const LEVELS: &[&str] = &["INFO ", "DEBUG", "WARN ", "INFO ", "ERROR"];
    const WORDS: &[&str] = &[
        "request",
        "processed",
        "batch",
        "of",
        "items",
        "connection",
        "opened",
        "to",
        "database",
        "cache",
        "miss",
        "for",
        "key",
        "user",
        "session",
        "refreshed",
        "upload",
        "completed",
        "in",
        "retrying",
        "after",
        "timeout",
        "the",
        "worker",
        "queue",
        "drained",
        "config",
        "loaded",
        "from",
        "disk",
        "status",
        "ok",
    ];
    let mut out = Vec::with_capacity(INPUT_BYTES + 512);
    let mut line = 0u64;
    while out.len() < INPUT_BYTES {
        line += 1;
        let ms = line * 7;
        out.extend_from_slice(
            format!(
                "2024-05-01T12:{:02}:{:02}.{:03}Z {} [worker-{}] id={:016x} ",
                (ms / 60_000) % 60,
                (ms / 1000) % 60,
                ms % 1000,
                LEVELS[rng.below(LEVELS.len())],
                rng.below(8),
                rng.next()
            )
            .as_bytes(),
        );
        for _ in 0..4 + rng.below(10) {
            out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(format!("path=/api/v1/items/{} status=200", rng.below(100_000)).as_bytes());
        // Roughly one line in 20,000 prints a secret or one of its encodings.
        if rng.below(20_000) == 0 {
            out.extend_from_slice(b" token=");
            if rng.below(2) == 0 {
                out.extend_from_slice(&secrets[rng.below(secrets.len())]);
            } else {
                out.extend_from_slice(&patterns[rng.below(patterns.len())]);
            }
        }
        out.push(b'\n');
    }
    out.truncate(INPUT_BYTES);
    out
}

fn naive(values: &[Vec<u8>], input: &str) -> String {
    let mut text = input.to_owned();
    for v in values {
        if let Ok(v) = std::str::from_utf8(v) {
            text = text.replace(v, "<secret-hidden>");
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x5EC2E7);
    let values = secrets(&mut rng);
    let set = mask::MaskSet::new(MIN_LEN);
    let started = Instant::now();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("bench/SECRET_{i}")).collect();
    set.extend(keys.iter().map(String::as_str).zip(values.iter().map(Vec::as_slice)))
        .expect("mask set builds");
    let build = started.elapsed();
    let masker = set.masker();
    let derived: Vec<Vec<u8>> =
        values.iter().flat_map(|v| mask::derive_patterns(v, MIN_LEN)).map(|p| p.to_vec()).collect();
    let input = log_text(&mut rng, &values, &derived);
    println!(
        "mask bench: {} values, {} patterns, {} pattern bytes, longest {}, built in {:?}",
        set.value_count(),
        masker.pattern_count(),
        set.pattern_bytes(),
        masker.max_pattern_len(),
        build
    );
    let masked = masker.mask(&input).expect("mask");
    let hidden = masked.windows(mask::REPLACEMENT.len()).filter(|w| *w == mask::REPLACEMENT).count();
    println!("mask bench: {hidden} hidden regions in {} input bytes", input.len());

    let mut group = c.benchmark_group("mask");
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("one_shot_64MiB", |b| b.iter(|| masker.mask(black_box(&input)).expect("mask")));
    let mut reused = Vec::with_capacity(input.len());
    group.bench_function("one_shot_into_reused_buffer", |b| {
        b.iter(|| {
            reused.clear();
            masker.mask_into(black_box(&input), &mut reused).expect("mask");
            reused.len()
        })
    });
    // Floor for anything returning a fresh 64 MiB Vec: page faults dominate.
    group.bench_function("memcpy_to_fresh_vec", |b| b.iter(|| black_box(&input).to_vec()));
    group.bench_function("stream_64KiB_chunks", |b| {
        b.iter(|| {
            let mut stream = mask::StreamMasker::new(Arc::clone(&masker));
            let mut emitted = 0usize;
            for chunk in black_box(&input).chunks(CHUNK) {
                emitted += stream.push(chunk).expect("push").len();
            }
            emitted + stream.finish().expect("finish").len()
        })
    });
    let prefix = std::str::from_utf8(&input[..NAIVE_BYTES]).expect("ascii input");
    group.throughput(Throughput::Bytes(NAIVE_BYTES as u64));
    group.bench_function("naive_replace_loop_4MiB", |b| b.iter(|| naive(&values, black_box(prefix))));
    group.finish();

    // One-line summary from single timed runs, for quoting a ratio.
    let per_byte = |bytes: usize, f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64() / bytes as f64
    };
    let ours = per_byte(input.len(), &mut || drop(black_box(masker.mask(&input).expect("mask"))));
    let slow = per_byte(NAIVE_BYTES, &mut || drop(black_box(naive(&values, prefix))));
    println!(
        "mask bench summary: one-shot {:.2} GB/s, naive {:.4} GB/s, ratio {:.0}x",
        1e-9 / ours,
        1e-9 / slow,
        slow / ours
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
