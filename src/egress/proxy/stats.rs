//! The proxy's counters: unlabelled on purpose, so no host, secret name or value can ever
//! reach a metrics scrape.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What the egress proxy has done since start. Cheap to share behind an `Arc`; each counter
/// is a handle onto the same atomic, so registering clones is fine.
#[derive(Debug, Default)]
pub struct EgressStats {
    /// Placeholders seen where they are not substituted (plain http, an unnamed place, a body).
    pub audit_placeholder: Counter,
    /// Placeholders replaced by their value in a request.
    pub substitutions: Counter,
    /// `CONNECT` tunnels passed through unread.
    pub blind_tunnels: Counter,
    /// `CONNECT` tunnels whose TLS the proxy terminated.
    pub intercepted: Counter,
    /// Upstream TLS connections that failed (certificate not verified, handshake refused).
    pub upstream_tls_failures: Counter,
    /// Requests refused with 407 (no, malformed, unknown or revoked credential).
    pub auth_failures: Counter,
}

impl EgressStats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the counters under the `egress_` prefix (`egress_substitutions_total`, …).
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("egress");
        let counters: [(&str, &str, &Counter); 6] = [
            (
                "audit_placeholder",
                "Placeholders seen where they are not substituted",
                &self.audit_placeholder,
            ),
            ("substitutions", "Placeholders replaced by their value in a request", &self.substitutions),
            ("blind_tunnels", "CONNECT tunnels passed through unread", &self.blind_tunnels),
            ("intercepted", "CONNECT tunnels whose TLS the proxy terminated", &self.intercepted),
            (
                "upstream_tls_failures",
                "Upstream TLS connections that failed to verify or handshake",
                &self.upstream_tls_failures,
            ),
            ("auth_failures", "Proxy requests refused for want of a live credential", &self.auth_failures),
        ];
        for (name, help, counter) in counters {
            sub.register(name, help, counter.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_unlabelled_totals() {
        let stats = EgressStats::new();
        stats.substitutions.inc();
        let mut registry = Registry::default();
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("egress_substitutions_total 1"), "{text}");
        for name in
            ["audit_placeholder", "blind_tunnels", "intercepted", "upstream_tls_failures", "auth_failures"]
        {
            assert!(text.contains(&format!("egress_{name}_total 0")), "{name}: {text}");
        }
        assert!(!text.contains('{'), "labels: {text}");
    }
}
