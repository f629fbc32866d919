//! Resolver figures against an in-process settings server on loopback:
//! - cached resolve latency, next to an uncached fetch of the same secret (what the
//!   reference does on every command), measured in the same run;
//! - upstream requests made by 1,000 resolves within the TTL (target: 1);
//! - upstream requests made by 500 concurrent resolves of one cold secret (target: 1).
//!
//! Run with `cargo bench --bench resolve`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use secret_sidecar::secrets::fetch::{FetchConfig, Fetcher};
use secret_sidecar::secrets::origin::{Origin, OriginPolicy};
use secret_sidecar::secrets::registry::{Limits, Registry, ScopeId};
use secret_sidecar::secrets::resolver::{CacheConfig, Resolver};
use secret_sidecar::secrets::session_key::{KeySource, SessionKey};
use secret_sidecar::secrets::source::{ParseContext, parse_update};
use secret_sidecar::secrets::value::SecretName;
use serde_json::json;
use tokio::runtime::Runtime;

struct Bench {
    rt: Runtime,
    base: String,
    hits: Arc<AtomicUsize>,
    resolver: Resolver,
    registry: Registry,
    ctx: ParseContext,
    fetcher: Fetcher,
}

fn setup() -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let base = rt.block_on(async move {
        let app = Router::new().route(
            "/api/v1/sandboxes/sb/settings/secrets/{name}",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    // A realistic settings API takes a few milliseconds.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    "value-of-the-secret\n"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    });
    let policy = OriginPolicy::new(vec![Origin::parse(&base).unwrap()], vec![]);
    let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
    let cache = CacheConfig {
        ttl: Duration::from_secs(300),
        capacity: 10_000,
        max_upstream: 16,
        max_stale: Duration::from_secs(3600),
    };
    let key = Arc::new(SessionKey::new(KeySource::Fixed(Some("bench-key".to_owned().into()))));
    let masks = Arc::new(secret_sidecar::mask::MaskSet::new(4));
    let resolver = Resolver::new(fetcher.clone(), cache, policy.clone(), key, HashMap::new(), masks);
    let registry = Registry::new(Limits { max_conversations: 16, max_secrets_per_scope: 4096 });
    let ctx = ParseContext { policy, ..ParseContext::default() };
    Bench { rt, base, hits, resolver, registry, ctx, fetcher }
}

impl Bench {
    fn register(&self, name: &str) -> Arc<secret_sidecar::secrets::registry::Entry> {
        let url = format!("{}/api/v1/sandboxes/sb/settings/secrets/{name}", self.base);
        let body = json!({"secrets": {name: {"kind": "LookupSecret", "url": url}}});
        let entries = parse_update(&body, &self.ctx).unwrap();
        self.registry.update(&ScopeId::Sandbox, entries).unwrap();
        self.registry.get(&ScopeId::Sandbox, &SecretName::parse(name).unwrap()).unwrap().entry
    }
}

fn resolve(c: &mut Criterion) {
    let b = setup();

    // Upstream requests for 1,000 resolves within the TTL.
    let warm = b.register("WARM");
    let before = b.hits.load(Ordering::Relaxed);
    b.rt.block_on(async {
        for _ in 0..1000 {
            b.resolver.resolve(&warm).await.unwrap();
        }
    });
    let warm_requests = b.hits.load(Ordering::Relaxed) - before;

    // Upstream requests for 500 concurrent resolves of one cold secret.
    let cold = b.register("COLD");
    let before = b.hits.load(Ordering::Relaxed);
    b.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..500 {
            let (resolver, entry) = (b.resolver.clone(), cold.clone());
            set.spawn(async move { resolver.resolve(&entry).await.unwrap() });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    let cold_requests = b.hits.load(Ordering::Relaxed) - before;

    let mut group = c.benchmark_group("resolve");
    group.bench_function("cached", |bench| {
        bench.iter_custom(|iters| {
            b.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(b.resolver.resolve(&warm).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    let name = SecretName::parse("WARM").unwrap();
    let url = url::Url::parse(&format!("{}/api/v1/sandboxes/sb/settings/secrets/WARM", b.base)).unwrap();
    group.sample_size(20).bench_function("uncached_fetch_baseline", |bench| {
        bench.iter_custom(|iters| {
            b.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(b.fetcher.fetch(&name, &url, http::HeaderMap::new()).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    // One summary with ratios from this run.
    let time = |f: &dyn Fn()| {
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed() / n
    };
    let cached = time(&|| {
        b.rt.block_on(async {
            for _ in 0..100 {
                black_box(b.resolver.resolve(&warm).await.unwrap());
            }
        })
    }) / 100;
    let uncached = time(&|| {
        b.rt.block_on(async {
            black_box(b.fetcher.fetch(&name, &url, http::HeaderMap::new()).await.unwrap())
        });
    });
    println!(
        "\nresolver summary: cached resolve {cached:?}, uncached fetch {uncached:?} (×{:.0} faster); \
         upstream requests: {warm_requests} for 1,000 resolves within the TTL (target 1), \
         {cold_requests} for 500 concurrent cold resolves (target 1)",
        uncached.as_secs_f64() / cached.as_secs_f64()
    );
}

criterion_group!(benches, resolve);
criterion_main!(benches);
