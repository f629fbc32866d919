//! [`SystemResolver`]: name resolution in pure Rust for every outbound connection the binary
//! makes — `/etc/hosts` first, then the name servers of `/etc/resolv.conf` (hickory).
//!
//! Why not the C library: the release binary is static (it runs in a `scratch` image and is
//! copied into sandbox images of any distribution), and a static glibc cannot load the NSS
//! modules `getaddrinfo` needs, so in such an image it resolves nothing at all. This module
//! reads the same two files itself, as `files dns` would.
//!
//! Not here: which addresses a lookup may connect to (`secrets::guard` filters what this
//! returns) or `--lookup-resolve` overrides (the guard answers those before asking here).
//!
//! Both files are read once, when the resolver is built. A missing `/etc/resolv.conf` leaves
//! the hosts file and `localhost`: names are never sent to a name server nobody configured.
//! Invariant: `localhost` and names under `.localhost` are loopback (RFC 6761) whatever the
//! files say or lack, and an answer is never empty (no address is an error).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Where the C library reads host names.
const HOSTS_FILE: &str = "/etc/hosts";
/// Where the C library reads its name servers, search list and options.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why a name did not resolve. Messages name the host only.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Neither the hosts file nor the name servers know the name.
    #[error("no address found for {0}")]
    NotFound(String),
    /// The name is not in the hosts file and no name server is configured.
    #[error("cannot resolve {0}: no name server in /etc/resolv.conf")]
    NoNameServer(String),
    /// The name servers could not be asked (timeout, refused, malformed answer).
    #[error("cannot resolve {host}: {cause}")]
    Failed { host: String, cause: String },
}

/// Resolves host names from the hosts file, then DNS. Cheap to clone.
#[derive(Clone)]
pub struct SystemResolver {
    /// Lowercased name without a trailing dot, and one of its addresses, in file order.
    hosts: Arc<Vec<(String, IpAddr)>>,
    /// `None` when no name server is configured.
    dns: Option<TokioResolver>,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver")
            .field("hosts", &self.hosts.len())
            .field("dns", &self.dns.is_some())
            .finish()
    }
}

impl SystemResolver {
    /// The resolver the C library would use: `/etc/hosts` and `/etc/resolv.conf`.
    pub fn system() -> Self {
        Self::from_files(Path::new(HOSTS_FILE), Path::new(RESOLV_CONF))
    }

    /// A resolver from these two files; either may be missing (a missing hosts file is
    /// empty; a missing or unusable `resolv.conf` means no name servers).
    pub fn from_files(hosts_file: &Path, resolv_conf: &Path) -> Self {
        let hosts = std::fs::read_to_string(hosts_file).map(|t| parse_hosts(&t)).unwrap_or_default();
        let dns = match std::fs::read(resolv_conf) {
            Ok(text) => match hickory_resolver::system_conf::parse_resolv_conf(text) {
                Ok((config, opts)) => Some(build(config, opts)),
                // Also when it lists no name server.
                Err(e) => {
                    tracing::warn!(path = %resolv_conf.display(), "cannot use resolv.conf, using the hosts file only: {e}");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %resolv_conf.display(), "cannot read resolv.conf, using the hosts file only: {e}");
                None
            }
        };
        Self { hosts: Arc::new(hosts), dns }
    }

    /// The addresses of `host` (a name, or an IP literal answered as itself).
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if host == "localhost" || host.ends_with(".localhost") {
            return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        }
        let listed: Vec<IpAddr> = self.hosts.iter().filter(|(n, _)| *n == host).map(|(_, ip)| *ip).collect();
        if !listed.is_empty() {
            return Ok(listed);
        }
        let Some(dns) = &self.dns else { return Err(DnsError::NoNameServer(host)) };
        match dns.lookup_ip(host.as_str()).await {
            Ok(answer) => {
                let ips: Vec<IpAddr> = answer.iter().collect();
                if ips.is_empty() { Err(DnsError::NotFound(host)) } else { Ok(ips) }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(DnsError::NotFound(host)),
            Err(e) => Err(DnsError::Failed { host, cause: e.to_string() }),
        }
    }
}

/// The hickory resolver for `resolv.conf`'s servers and options, asking for both address
/// families as `getaddrinfo` does; the hosts file is handled above, not by hickory.
fn build(config: ResolverConfig, mut opts: ResolverOpts) -> TokioResolver {
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).with_options(opts).build()
}

/// `addr name alias…` lines; `#` starts a comment; unparsable addresses are skipped.
fn parse_hosts(text: &str) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else { continue };
        for name in words {
            out.push((name.trim_end_matches('.').to_ascii_lowercase(), ip));
        }
    }
    out
}

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let ips = resolver.lookup(name.as_str()).await?;
            // Port 0: the connector substitutes the URL's port.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| (ip, 0).into()));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A resolver from these file contents (`None`: the file is missing); the files are
    /// read when it is built, so they are removed at once.
    fn from_texts(tag: &str, hosts: Option<&str>, resolv: Option<&str>) -> SystemResolver {
        let dir = std::env::temp_dir().join(format!("sidecar-dns-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (h, r): (PathBuf, PathBuf) = (dir.join("hosts"), dir.join("resolv.conf"));
        if let Some(t) = hosts {
            std::fs::write(&h, t).unwrap();
        }
        if let Some(t) = resolv {
            std::fs::write(&r, t).unwrap();
        }
        let resolver = SystemResolver::from_files(&h, &r);
        let _ = std::fs::remove_dir_all(&dir);
        resolver
    }

    #[test]
    fn hosts_lines() {
        let parsed = parse_hosts(
            "# comment\n127.0.0.1 localhost\n\n10.1.2.3\tSettings.Test. alias # trailing\nbogus name\n::1 v6.test\n10.1.2.4 settings.test\n",
        );
        assert_eq!(
            parsed,
            vec![
                ("localhost".to_owned(), ip("127.0.0.1")),
                ("settings.test".to_owned(), ip("10.1.2.3")),
                ("alias".to_owned(), ip("10.1.2.3")),
                ("v6.test".to_owned(), ip("::1")),
                ("settings.test".to_owned(), ip("10.1.2.4")),
            ]
        );
    }

    #[tokio::test]
    async fn hosts_file_answers_without_any_name_server() {
        let resolver = from_texts("hosts", Some("127.0.0.1 settings.test\n127.0.0.2 settings.test\n"), None);
        assert_eq!(resolver.lookup("SETTINGS.test.").await.unwrap(), vec![ip("127.0.0.1"), ip("127.0.0.2")]);
        assert_eq!(resolver.lookup("127.0.0.9").await.unwrap(), vec![ip("127.0.0.9")]);
        assert_eq!(resolver.lookup("[::1]").await.unwrap(), vec![ip("::1")]);
        let e = resolver.lookup("other.test").await.unwrap_err();
        assert_eq!(e.to_string(), "cannot resolve other.test: no name server in /etc/resolv.conf");
    }

    #[tokio::test]
    async fn localhost_needs_no_file() {
        let resolver = from_texts("empty", None, None);
        for name in ["localhost", "LOCALHOST.", "sidecar.localhost"] {
            let ips = resolver.lookup(name).await.unwrap();
            assert!(!ips.is_empty() && ips.iter().all(IpAddr::is_loopback), "{name}: {ips:?}");
        }
    }

    #[tokio::test]
    async fn name_servers_come_from_resolv_conf() {
        // A server on a loopback port nobody listens on: the name is asked there and fails,
        // which shows the file was read (no fallback to a public resolver).
        let resolver =
            from_texts("dns", Some(""), Some("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"));
        assert!(resolver.dns.is_some());
        let e = resolver.lookup("nothing.invalid").await.unwrap_err();
        assert!(matches!(e, DnsError::Failed { .. } | DnsError::NotFound(_)), "{e}");
        assert!(from_texts("nodns", Some(""), Some("# no servers\n")).dns.is_none());
    }
}
