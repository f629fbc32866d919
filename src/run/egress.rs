//! Egress mode in the command pipeline (contract §8): a command that uses a bound secret
//! gets its placeholder, never its value, plus one proxy credential and the variables that
//! route its HTTP(S) through the egress proxy and make it trust the egress CA.
//!
//! What is decided here:
//! - a secret's effective binding: its descriptor's own, else `--egress-bind` /
//!   `--egress-defaults` by name; none when `--egress off`;
//! - which bound values cannot be bound (under 16 bytes, not text) and which unbound exports
//!   carry a value seen bound (never exported raw under another name: such an export is
//!   refused like an unresolvable secret, 424 or skipped);
//! - the credential ([`Credential`], revoked on drop) and the variables.
//!
//! Not here: the proxy itself, which looks credentials up in the shared [`Grants`].
//!
//! Invariant: the proxy token appears only in the variables of the command that holds it;
//! a request `env` that carries a live token is stripped of it.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::EgressConfig;
use crate::egress::binding::Binding;
use crate::egress::grant::{Credential, Grant, Grants};
use crate::egress::named::NamedBindings;
use crate::egress::parse::MIN_BOUND_BYTES;
use crate::egress::placeholder::Placeholders;
use crate::egress::runtime::Runtime;
use crate::secrets::export::MissingReason;
use crate::secrets::source::{EntryError, SecretSource, StaticSecret, too_short_to_bind};
use crate::secrets::value::{SecretName, SecretValue};

/// The variables that send a command's traffic through the proxy.
const PROXY_VARS: &[&str] = &["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];
/// The variables that point a command's TLS clients at the bundle. npm ignores
/// `NODE_EXTRA_CA_CERTS` when a `cafile` is configured (Debian's npm sets one globally);
/// `npm_config_cafile` wins over every npmrc.
const CA_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_cafile",
];
/// Never sent through the proxy.
const LOOPBACK: &str = "localhost,127.0.0.1,::1";
/// Most bound-value digests remembered (a flood of rotations cannot grow memory forever).
const MAX_BOUND_DIGESTS: usize = 65_536;

/// Every variable name egress mode sets.
pub(crate) fn is_egress_var(name: &str) -> bool {
    PROXY_VARS.contains(&name)
        || CA_VARS.contains(&name)
        || matches!(name, "NO_PROXY" | "no_proxy" | "NODE_USE_ENV_PROXY")
}

/// An export that is bound, and its binding.
pub(crate) type Bound = (String, Arc<Binding>);

/// Egress mode's part of the pipeline. Shared by every command.
pub(crate) struct Egress {
    enabled: bool,
    /// `host:port` the proxy URL names.
    proxy_addr: String,
    bindings: Arc<NamedBindings>,
    placeholders: Placeholders,
    grants: Arc<Grants>,
    /// The proxy's runtime, started by the first command that holds placeholders.
    runtime: Option<Arc<Runtime>>,
    bundle: PathBuf,
    /// Keyed digests of every value seen bound; a std lock, never held across an `.await`.
    bound: Mutex<HashSet<[u8; 32]>>,
    digest_key: [u8; 32],
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("enabled", &self.enabled).field("proxy", &self.proxy_addr).finish()
    }
}

/// What a command holds in egress mode: its credential, and what its variables become.
pub(crate) struct Issued {
    /// Revoked when dropped: held for exactly as long as the command runs.
    pub credential: Credential,
    /// Export name → placeholder, for the bound exports.
    pub placeholders: BTreeMap<String, SecretValue>,
    /// The proxy, `NO_PROXY` and CA variables.
    pub vars: Vec<(String, SecretValue)>,
}

impl Egress {
    /// Egress mode as `cfg` configures it; credentials are issued into `grants`, placeholders
    /// are made from `cfg.placeholder_key` (random per start without one).
    pub(crate) fn new(cfg: &EgressConfig, grants: Arc<Grants>, runtime: Option<Arc<Runtime>>) -> Self {
        let host = match cfg.listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let mut digest_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut digest_key);
        Self {
            enabled: cfg.enabled,
            proxy_addr: SocketAddr::new(host, cfg.listen.port()).to_string(),
            bindings: cfg.bindings.clone(),
            placeholders: Placeholders::new(cfg.placeholder_key.as_deref()),
            grants,
            runtime,
            bundle: cfg.ca_bundle.clone(),
            bound: Mutex::new(HashSet::new()),
            digest_key,
        }
    }

    /// The live credentials (the proxy looks tokens up here).
    pub(crate) fn grants(&self) -> &Arc<Grants> {
        &self.grants
    }

    /// The binding that applies to the secret exported as `name`: the descriptor's `own`,
    /// else one configured by name; none when egress mode is off.
    pub(crate) fn binding(&self, name: &str, own: Option<&Arc<Binding>>) -> Option<Arc<Binding>> {
        if !self.enabled {
            return None;
        }
        own.or_else(|| self.bindings.get(name)).cloned()
    }

    /// Checks an update against the bindings configured by name (a descriptor's own binding
    /// was checked as it was parsed): a static value they bind must be long enough. Records
    /// the bound static values, so they are never exported raw under another name.
    pub(crate) fn check_update(&self, entries: &[(SecretName, SecretSource)]) -> Result<(), EntryError> {
        for (name, source) in entries {
            let SecretSource::Static(StaticSecret { value: Some(value), egress, .. }) = source else {
                continue;
            };
            if self.binding(name.as_str(), egress.as_ref()).is_none() {
                continue;
            }
            if value.len() < MIN_BOUND_BYTES {
                let loc = ["body", "secrets", name.as_str(), "value"].map(String::from).to_vec();
                return Err(EntryError { loc, msg: too_short_to_bind() });
            }
        }
        for (name, source) in entries {
            if let SecretSource::Static(StaticSecret { value: Some(value), egress, .. }) = source {
                if self.binding(name.as_str(), egress.as_ref()).is_some() {
                    self.remember_bound(value.expose());
                }
            }
        }
        Ok(())
    }

    /// Sorts a command's exports: the bound ones with their bindings, and the ones that
    /// cannot be exported as they are (with why). `own` holds the descriptors' own bindings
    /// by export name.
    pub(crate) fn classify(
        &self,
        exports: &[(String, SecretValue)],
        own: &BTreeMap<String, Arc<Binding>>,
    ) -> (Vec<Bound>, Vec<(String, MissingReason)>) {
        let (mut bound, mut refused) = (Vec::new(), Vec::new());
        if !self.enabled {
            return (bound, refused);
        }
        let mut unbound = Vec::new();
        for (name, value) in exports {
            let Some(binding) = self.binding(name, own.get(name)) else {
                unbound.push((name, value));
                continue;
            };
            // Remembered even when refused: the value stays bound under this name.
            self.remember_bound(value.expose());
            if value.len() < MIN_BOUND_BYTES {
                refused.push((name.clone(), MissingReason::TooShortToBind(name.clone())));
            } else if std::str::from_utf8(value.expose()).is_err() {
                refused.push((name.clone(), MissingReason::NotBindable(name.clone())));
            } else {
                bound.push((name.clone(), binding));
            }
        }
        for (name, value) in unbound {
            if self.is_bound_value(value.expose()) {
                refused.push((name.clone(), MissingReason::BoundElsewhere(name.clone())));
            }
        }
        (bound, refused)
    }

    /// Drops request variables that carry a live proxy credential: a token belongs to the
    /// one command it was issued to.
    pub(crate) fn scrub_env(&self, env: &mut Vec<(String, String)>) {
        if self.grants.live_count() == 0 {
            return;
        }
        env.retain(|(_, value)| !self.carries_live_token(value.as_bytes()));
    }

    /// Issues the credential for the `bound` exports among `secrets` (whose values are real)
    /// and the variables that go with it. `id` names a secret for its placeholder (scope and
    /// name); `inherited` gives a variable's value the command would otherwise get.
    pub(crate) fn issue<'a>(
        &self,
        id: impl Fn(&str) -> String,
        secrets: &[(String, SecretValue)],
        bound: &[Bound],
        inherited: impl Fn(&str) -> Option<&'a OsStr>,
    ) -> Issued {
        let mut placeholders = BTreeMap::new();
        let mut grants = Vec::new();
        for (name, binding) in bound {
            let Some((_, value)) = secrets.iter().find(|(n, _)| n == name) else { continue };
            let Ok(text) = String::from_utf8(value.expose().to_vec()) else { continue };
            let placeholder = self.placeholders.make(&id(name), value.expose());
            let exported = SecretValue::from_bytes(placeholder.as_bytes().to_vec())
                .expect("a placeholder is never blank");
            placeholders.insert(name.clone(), exported);
            grants.push(Grant {
                name: name.clone(),
                placeholder: SecretString::from(placeholder),
                value: SecretString::from(text),
                binding: binding.clone(),
            });
        }
        if let Some(runtime) = &self.runtime {
            // The CA, the bundle and the proxy, made before the first command that needs them.
            runtime.ensure_running();
        }
        let credential = self.grants.issue(grants);
        let url =
            format!("http://{}:{}@{}", Credential::USER, credential.token().expose_secret(), self.proxy_addr);
        let text = |s: &[u8]| SecretValue::from_bytes(s.to_vec());
        let mut vars: Vec<(String, SecretValue)> = Vec::new();
        for name in PROXY_VARS {
            vars.extend(text(url.as_bytes()).map(|v| ((*name).to_owned(), v)));
        }
        for (name, other) in [("NO_PROXY", "no_proxy"), ("no_proxy", "NO_PROXY")] {
            let base = inherited(name).or_else(|| inherited(other)).map(OsStr::as_bytes).unwrap_or_default();
            let base = trim_list(base);
            let merged = if base.is_empty() {
                LOOPBACK.as_bytes().to_vec()
            } else {
                [base, b",", LOOPBACK.as_bytes()].concat()
            };
            vars.extend(text(&merged).map(|v| (name.to_owned(), v)));
        }
        vars.extend(text(b"1").map(|v| ("NODE_USE_ENV_PROXY".to_owned(), v)));
        for name in CA_VARS {
            vars.extend(text(self.bundle.as_os_str().as_bytes()).map(|v| ((*name).to_owned(), v)));
        }
        Issued { credential, placeholders, vars }
    }

    fn digest(&self, value: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.digest_key).expect("HMAC takes any key length");
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    fn remember_bound(&self, value: &[u8]) {
        let digest = self.digest(value);
        let mut set = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() < MAX_BOUND_DIGESTS {
            set.insert(digest);
        }
    }

    fn is_bound_value(&self, value: &[u8]) -> bool {
        let digest = self.digest(value);
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).contains(&digest)
    }

    /// True when `value` holds `cmd:<token>` for a live token.
    fn carries_live_token(&self, value: &[u8]) -> bool {
        const TOKEN_HEX: usize = 48;
        let marker = format!("{}:", Credential::USER);
        let marker = marker.as_bytes();
        value.windows(marker.len()).enumerate().any(|(i, w)| {
            w == marker
                && value
                    .get(i + marker.len()..i + marker.len() + TOKEN_HEX)
                    .is_some_and(|token| self.grants.lookup(token).is_some())
        })
    }
}

/// `bytes` without surrounding whitespace and trailing commas, so a merge never makes an
/// empty `NO_PROXY` entry.
fn trim_list(bytes: &[u8]) -> &[u8] {
    let mut s = bytes.trim_ascii();
    while let [rest @ .., b','] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::binding::HostPattern;

    fn egress(args: &[&str]) -> Egress {
        let argv = std::iter::once("secret-sidecar").chain(args.iter().copied());
        let args = crate::cli::ServeArgs::parse_from(argv).unwrap();
        let path = std::env::var("PATH").unwrap_or_default();
        let env = crate::config::Env::from_pairs([("PATH".to_owned(), path)]);
        let config = crate::config::Config::new(&args, &env).unwrap();
        Egress::new(&config.egress, Grants::new(), None)
    }

    fn value(s: &str) -> SecretValue {
        SecretValue::from_bytes(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn classify_binds_refuses_and_remembers() {
        let e = egress(&["--egress-bind", "A=a.example.com", "--egress-bind", "SHORT=a.example.com"]);
        let own = BTreeMap::from([(
            "OWN".to_owned(),
            Arc::new(Binding {
                hosts: vec![HostPattern::Exact("own.example.com".into())],
                ..Binding::default()
            }),
        )]);
        let exports = vec![
            ("A".to_owned(), value("a-value-0123456789")),
            ("COPY_OF_A".to_owned(), value("a-value-0123456789")),
            ("OWN".to_owned(), value("own-value-0123456789")),
            ("PLAIN".to_owned(), value("plain")),
            ("SHORT".to_owned(), value("too-short")),
        ];
        let (bound, refused) = e.classify(&exports, &own);
        let names: Vec<&str> = bound.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["A", "OWN"]);
        let refused: Vec<String> = refused.iter().map(|(_, r)| r.to_string()).collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("SHORT") && refused[0].contains("too short to bind"));
        assert!(refused[1].contains("COPY_OF_A") && refused[1].contains("bound to egress hosts"));
        // Remembered: later, alone, the copy is still refused.
        let (_, refused) = e.classify(&exports[1..2], &BTreeMap::new());
        assert_eq!(refused.len(), 1);
        // Off: nothing is bound or refused.
        let off = egress(&["--egress", "off", "--egress-bind", "A=a.example.com"]);
        assert_eq!(off.classify(&exports, &own).0.len() + off.classify(&exports, &own).1.len(), 0);
    }

    #[test]
    fn issue_makes_one_credential_and_the_variables() {
        let e = egress(&["--egress-listen", "0.0.0.0:9002", "--egress-ca-bundle", "/run/b.pem"]);
        let binding =
            Arc::new(Binding { hosts: vec![HostPattern::Exact("a.example".into())], ..Binding::default() });
        let secrets = vec![("A".to_owned(), value("a-value-0123456789"))];
        let inherited = |name: &str| (name == "no_proxy").then(|| OsStr::new(" corp.example, "));
        let issued = e.issue(|n| format!("sandbox/{n}"), &secrets, &[("A".to_owned(), binding)], inherited);
        assert_eq!(e.grants().live_count(), 1);
        let var = |name: &str| {
            let (_, v) = issued.vars.iter().find(|(n, _)| n == name).unwrap();
            String::from_utf8(v.expose().to_vec()).unwrap()
        };
        let token = issued.credential.token().expose_secret().to_owned();
        assert_eq!(var("HTTPS_PROXY"), format!("http://cmd:{token}@127.0.0.1:9002"));
        assert_eq!(var("NO_PROXY"), "corp.example,localhost,127.0.0.1,::1", "the other case's value");
        assert_eq!(var("no_proxy"), "corp.example,localhost,127.0.0.1,::1");
        assert_eq!(var("GIT_SSL_CAINFO"), "/run/b.pem");
        assert!(issued.vars.iter().all(|(n, _)| is_egress_var(n)));
        let placeholder = issued.placeholders["A"].expose().to_vec();
        assert_eq!(placeholder.len(), 18);
        assert_ne!(placeholder, b"a-value-0123456789");

        // A live token is scrubbed from a request env; a dead one is not looked for.
        let mut env =
            vec![("X".to_owned(), format!("http://cmd:{token}@h")), ("Y".to_owned(), "cmd:nothing".into())];
        e.scrub_env(&mut env);
        assert_eq!(env.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["Y"]);
        drop(issued);
        assert_eq!(e.grants().live_count(), 0);
    }
}
