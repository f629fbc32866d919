//! Egress mode's configuration (contract §8): every `--egress-*` flag, validated once here,
//! including the ones only the proxy uses (listen address, upstream trust, pins, upstream
//! proxy), so the proxy receives typed values.
//!
//! Errors name the option and never repeat a proxy URL (it may carry credentials).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretBox;
use url::Url;

use super::{ConfigError, Env, default_key_file};
use crate::cli::{EgressSwitch, ServeArgs};
use crate::egress::defaults::default_bindings;
use crate::egress::named::NamedBindings;
use crate::egress::parse::{parse_bind_flag, parse_host};

/// The system CA bundle (Debian, Ubuntu, Alpine), used when `SSL_CERT_FILE` is not set.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The bundle's file name in the runtime directory.
const BUNDLE_FILE: &str = "egress-ca-bundle.pem";

/// Egress mode's part of the configuration.
#[derive(Clone)]
pub struct EgressConfig {
    /// False only with `--egress off`; on, it acts on bound secrets only.
    pub enabled: bool,
    /// `--egress-listen`.
    pub listen: SocketAddr,
    /// `--egress-bind`, then (with `--egress-defaults`) the built-in table.
    pub bindings: Arc<NamedBindings>,
    /// `--egress-extra-ca-file`: trusted upstream besides the compiled-in web roots.
    pub extra_ca_file: Option<PathBuf>,
    /// `--egress-resolve HOST=IP` pins (hosts lower-case).
    pub resolve: Vec<(String, IpAddr)>,
    /// `--egress-upstream-proxy`.
    pub upstream_proxy: Option<Url>,
    /// Where the commands' CA bundle is written at start.
    pub ca_bundle: PathBuf,
    /// The bundle commands would otherwise use (`SSL_CERT_FILE`, else the system bundle),
    /// copied into [`Self::ca_bundle`] before the egress CA.
    pub inherited_bundle: Option<PathBuf>,
    /// Key placeholders are derived from; `None` = random per start. Set from the state key
    /// where one is configured.
    pub placeholder_key: Option<Arc<SecretBox<[u8; 32]>>>,
}

impl fmt::Debug for EgressConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("bindings", &self.bindings.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("extra_ca_file", &self.extra_ca_file)
            .field("resolve", &self.resolve)
            .field("upstream_proxy", &self.upstream_proxy.as_ref().map(|u| u.origin().ascii_serialization()))
            .field("ca_bundle", &self.ca_bundle)
            .field("inherited_bundle", &self.inherited_bundle)
            .field("placeholder_key", &self.placeholder_key.is_some())
            .finish()
    }
}

/// Validates the `--egress-*` flags.
pub(super) fn egress_config(args: &ServeArgs, env: &Env) -> Result<EgressConfig, ConfigError> {
    let invalid = |option, reason: String| ConfigError::Invalid { option, reason };
    let listen = args
        .egress_listen
        .parse::<SocketAddr>()
        .map_err(|_| invalid("--egress-listen", format!("{} is not IP:PORT", args.egress_listen)))?;
    let mut explicit = Vec::new();
    for item in &args.egress_bind {
        if item.is_empty() {
            continue;
        }
        explicit.push(parse_bind_flag(item).map_err(|e| invalid("--egress-bind", e.to_string()))?);
    }
    let defaults = if args.egress_defaults { default_bindings() } else { Vec::new() };
    let mut resolve = Vec::new();
    for item in &args.egress_resolve {
        let pin = item.split_once('=').and_then(|(h, ip)| {
            let host = parse_host(h, 0).ok()?;
            Some((host.to_string(), ip.parse::<IpAddr>().ok()?))
        });
        let pin = pin.filter(|(h, _)| !h.starts_with('*'));
        resolve.push(pin.ok_or_else(|| invalid("--egress-resolve", format!("{item} is not HOST=IP")))?);
    }
    let upstream_proxy = match &args.egress_upstream_proxy {
        Some(p) => {
            let url = Url::parse(p)
                .map_err(|source| ConfigError::Url { option: "--egress-upstream-proxy", source })?;
            if url.scheme() != "http" || url.host().is_none() {
                return Err(invalid("--egress-upstream-proxy", "must be an http:// proxy URL".into()));
            }
            Some(url)
        }
        None => None,
    };
    if let Some(path) = &args.egress_extra_ca_file {
        if !path.is_file() {
            return Err(invalid("--egress-extra-ca-file", format!("{} is not a file", path.display())));
        }
    }
    let ca_bundle = match &args.egress_ca_bundle {
        Some(path) if path.is_relative() => {
            return Err(invalid("--egress-ca-bundle", "must be an absolute path".into()));
        }
        Some(path) => path.clone(),
        None => default_key_file(env).with_file_name(BUNDLE_FILE),
    };
    let inherited_bundle = env
        .get("SSL_CERT_FILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(SYSTEM_BUNDLE)).filter(|p| p.is_file()));
    Ok(EgressConfig {
        enabled: args.egress != Some(EgressSwitch::Off),
        listen,
        bindings: Arc::new(NamedBindings::new(explicit, defaults)),
        extra_ca_file: args.egress_extra_ca_file.clone(),
        resolve,
        upstream_proxy,
        ca_bundle,
        inherited_bundle,
        placeholder_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str], env: &[(&str, &str)]) -> Result<EgressConfig, ConfigError> {
        let args =
            ServeArgs::parse_from(std::iter::once("secret-sidecar").chain(args.iter().copied())).unwrap();
        egress_config(&args, &Env::from_pairs(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))))
    }

    #[test]
    fn defaults() {
        let c = config(&[], &[("XDG_RUNTIME_DIR", "/run/user/7")]).unwrap();
        assert!(c.enabled && c.bindings.is_empty());
        assert_eq!(c.listen, "127.0.0.1:8002".parse().unwrap());
        assert_eq!(c.ca_bundle, PathBuf::from("/run/user/7/secret-sidecar/egress-ca-bundle.pem"));
        assert!(!config(&["--egress", "off"], &[]).unwrap().enabled);
    }

    #[test]
    fn bindings_explicit_win_over_defaults() {
        let c = config(&["--egress-defaults", "--egress-bind", "GITHUB_TOKEN=ghe.example.com"], &[]).unwrap();
        assert!(c.bindings.get("GITHUB_TOKEN").unwrap().covers("ghe.example.com"));
        assert!(!c.bindings.get("GITHUB_TOKEN").unwrap().covers("api.github.com"));
        assert!(c.bindings.get("GH_TOKEN").unwrap().covers("api.github.com"));
        assert!(config(&[], &[]).unwrap().bindings.get("GH_TOKEN").is_none());
    }

    #[test]
    fn errors_name_the_option_and_never_a_credential() {
        for (args, option) in [
            (&["--egress-listen", "nope"][..], "--egress-listen"),
            (&["--egress-bind", "X=*.com"], "--egress-bind"),
            (&["--egress-bind", "X=10.0.0.1"], "--egress-bind"),
            (&["--egress-resolve", "a.example=nope"], "--egress-resolve"),
            (&["--egress-resolve", "*.example.com=127.0.0.1"], "--egress-resolve"),
            (&["--egress-upstream-proxy", "socks5://u:sekrit@h"], "--egress-upstream-proxy"),
            (&["--egress-upstream-proxy", "http://u:sekrit@[::1"], "--egress-upstream-proxy"),
            (&["--egress-extra-ca-file", "/no/such/file"], "--egress-extra-ca-file"),
            (&["--egress-ca-bundle", "relative.pem"], "--egress-ca-bundle"),
        ] {
            let e = config(args, &[]).unwrap_err();
            assert_eq!(e.option(), option, "{args:?}");
            assert!(!format!("{e} {e:?}").contains("sekrit"), "{e}");
        }
        let c = config(
            &[
                "--egress-resolve",
                "API.example.com=127.0.0.1",
                "--egress-upstream-proxy",
                "http://u:sekrit@proxy.example:3128",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.resolve, [("api.example.com".to_owned(), "127.0.0.1".parse().unwrap())]);
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
