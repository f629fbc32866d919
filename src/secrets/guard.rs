//! The connect-time address guard: which IP addresses a lookup may never connect to, and the
//! DNS resolver that enforces it for every connection the lookup client opens.
//!
//! The origin allow-list ([`super::origin`]) decides which *names* a lookup may use; this
//! module decides which *addresses* those names may lead to, so a settings host whose DNS
//! answer (or a `--resolve`-style override) points at a cloud metadata service is refused
//! after resolution, where the answer is final. reqwest does not call a resolver for an
//! IP-literal host, so [`AddressGuard::check_url`] covers those before a request is sent.
//! Loopback and private ranges stay allowed: the settings server is often one of them.
//! Names not overridden are resolved by `dns::SystemResolver` (the hosts file, then
//! `resolv.conf`'s name servers), never by the C library, which a static binary cannot use.
//!
//! Invariant: an address for which [`is_blocked`] is true is never handed to the connector.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::dns::SystemResolver;

/// Single IPv4 addresses of cloud metadata and platform services.
const BLOCKED_V4: &[Ipv4Addr] = &[
    // Alibaba Cloud metadata.
    Ipv4Addr::new(100, 100, 100, 200),
    // Azure WireServer.
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS metadata over IPv6.
const BLOCKED_V6: &[Ipv6Addr] = &[Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];

/// True for addresses a lookup must never connect to: link-local (169.254.0.0/16, where
/// most clouds serve instance metadata, and fe80::/10), the single metadata addresses above,
/// the unspecified addresses (`0.0.0.0` and `::` reach the local host), and the
/// IPv4-mapped or IPv4-compatible IPv6 forms of the IPv4 ones.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || BLOCKED_V6.contains(&v6)
                // `::ffff:a.b.c.d` and the deprecated `::a.b.c.d` both carry an IPv4 address.
                || v6.to_ipv4().is_some_and(is_blocked_v4)
        }
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    ip.is_link_local() || ip.is_unspecified() || BLOCKED_V4.contains(&ip)
}

/// The refusal: every address of the host is blocked. It deliberately does not say which
/// address, so the message is the same for every way of reaching one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("address is blocked")]
pub struct BlockedAddress;

/// The guard, with the operator's host → IP overrides (like curl's `--resolve`).
#[derive(Clone, Debug)]
pub struct AddressGuard {
    /// Lowercased host without a trailing dot, and its address.
    overrides: Arc<Vec<(String, IpAddr)>>,
    /// Everything not overridden.
    system: SystemResolver,
}

impl AddressGuard {
    /// A guard that answers `overrides` (host → IP; several entries for one host give
    /// several addresses) instead of asking the system resolver for those hosts.
    pub fn new(overrides: &[(String, IpAddr)]) -> Self {
        Self::with_resolver(overrides, SystemResolver::system())
    }

    /// [`AddressGuard::new`] over a given resolver for the names not overridden.
    pub fn with_resolver(overrides: &[(String, IpAddr)], system: SystemResolver) -> Self {
        let overrides = overrides.iter().map(|(host, ip)| (normalise(host), *ip)).collect();
        Self { overrides: Arc::new(overrides), system }
    }

    /// Checks what can be checked before sending: an IP-literal host (reqwest never resolves
    /// those) and, when `overridden_hosts` is set, a host answered by the overrides. The
    /// latter is for the proxy case, where the target host is resolved by the proxy and this
    /// guard's resolver never sees it.
    pub fn check_url(&self, url: &Url, overridden_hosts: bool) -> Result<(), BlockedAddress> {
        match url.host() {
            Some(Host::Ipv4(ip)) if is_blocked(ip.into()) => Err(BlockedAddress),
            Some(Host::Ipv6(ip)) if is_blocked(ip.into()) => Err(BlockedAddress),
            Some(Host::Domain(host)) if overridden_hosts => {
                let ips = self.overridden(&normalise(host));
                if !ips.is_empty() && ips.iter().all(|ip| is_blocked(*ip)) {
                    return Err(BlockedAddress);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn overridden(&self, host: &str) -> Vec<IpAddr> {
        self.overrides.iter().filter(|(h, _)| h == host).map(|(_, ip)| *ip).collect()
    }

    /// Resolves `host` (overrides first, then the hosts file and DNS) and drops blocked
    /// addresses; refuses when nothing else is left.
    async fn resolve_host(
        &self,
        host: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let host = normalise(host);
        let mut ips = self.overridden(&host);
        if ips.is_empty() {
            ips = self.system.lookup(&host).await?;
        }
        if ips.is_empty() {
            return Err("name resolved to no address".into());
        }
        let allowed: Vec<IpAddr> = ips.iter().copied().filter(|ip| !is_blocked(*ip)).collect();
        if allowed.is_empty() {
            tracing::warn!(host = %host, "lookup host resolves only to blocked addresses; refused");
            return Err(Box::new(BlockedAddress));
        }
        if allowed.len() < ips.len() {
            tracing::warn!(host = %host, "lookup host resolves to some blocked addresses; skipping them");
        }
        Ok(allowed)
    }
}

impl Resolve for AddressGuard {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let ips = guard.resolve_host(name.as_str()).await?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| (ip, 0).into()));
            Ok(addrs)
        })
    }
}

/// Hosts compare lowercased and without a trailing dot, as origins do.
fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocked_addresses() {
        for s in [
            "169.254.169.254",
            "169.254.0.1",
            "169.254.255.255",
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
            "::",
            "fe80::1",
            "febf:ffff::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::ffff:100.100.100.200",
            "::ffff:168.63.129.16",
            "::ffff:0.0.0.0",
            "::169.254.169.254",
        ] {
            assert!(is_blocked(ip(s)), "{s} should be blocked");
        }
        for s in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "169.253.255.255",
            "169.255.0.1",
            "100.100.100.201",
            "168.63.129.17",
            "0.0.0.1",
            "::1",
            "fec0::1",
            "fd00:ec2::253",
            "::ffff:127.0.0.1",
            "2606:4700::1111",
        ] {
            assert!(!is_blocked(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked_before_sending() {
        let guard = AddressGuard::new(&[("Meta.Test.".to_owned(), ip("169.254.169.254"))]);
        let check = |u: &str, o: bool| guard.check_url(&Url::parse(u).unwrap(), o);
        assert_eq!(check("http://169.254.169.254/latest", false), Err(BlockedAddress));
        // The WHATWG parser turns other spellings into the same IPv4 host.
        assert_eq!(check("http://2852039166/", false), Err(BlockedAddress));
        assert_eq!(check("http://0x7f.1/", false), Ok(()));
        assert_eq!(check("http://[::ffff:169.254.169.254]/", false), Err(BlockedAddress));
        assert_eq!(check("http://0.0.0.0:8080/", false), Err(BlockedAddress));
        assert_eq!(check("http://[::]/", false), Err(BlockedAddress));
        assert_eq!(check("http://127.0.0.1/", false), Ok(()));
        // Overridden names are left to the resolver unless asked (the proxy case).
        assert_eq!(check("http://meta.test/", false), Ok(()));
        assert_eq!(check("http://meta.test/", true), Err(BlockedAddress));
        assert_eq!(check("http://other.test/", true), Ok(()));
    }

    #[tokio::test]
    async fn resolver_applies_overrides_and_filters() {
        let guard = AddressGuard::new(&[
            ("mixed.test".to_owned(), ip("169.254.169.254")),
            ("mixed.test".to_owned(), ip("127.0.0.1")),
            ("meta.test".to_owned(), ip("::ffff:169.254.169.254")),
        ]);
        assert_eq!(guard.resolve_host("MIXED.test.").await.unwrap(), vec![ip("127.0.0.1")]);
        let err = guard.resolve_host("meta.test").await.unwrap_err();
        assert!(err.downcast_ref::<BlockedAddress>().is_some(), "{err}");
        assert_eq!(err.to_string(), "address is blocked");
        assert!(guard.resolve_host("localhost").await.unwrap().iter().all(|ip| ip.is_loopback()));
    }

    #[tokio::test]
    async fn names_from_the_hosts_file_are_guarded_too() {
        let dir = std::env::temp_dir().join(format!("sidecar-guard-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 settings.test\n169.254.169.254 metadata.test\n").unwrap();
        let system = SystemResolver::from_files(&hosts, &dir.join("no-resolv.conf"));
        let guard = AddressGuard::with_resolver(&[], system);
        assert_eq!(guard.resolve_host("settings.test").await.unwrap(), vec![ip("127.0.0.1")]);
        let err = guard.resolve_host("metadata.test").await.unwrap_err();
        assert!(err.downcast_ref::<BlockedAddress>().is_some(), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
