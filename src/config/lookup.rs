//! Where lookups may go and how they are made: the settings origin (`--settings-url`, else
//! `OH_WEBHOOKS_0_BASE_URL`), the rest of the allow-list, the base for relative URLs, the
//! fetcher and cache settings, and discovery.
//!
//! Configured URLs can carry credentials (a proxy's userinfo, say), so no error here repeats
//! one: `url` and origin errors describe the fault, never the input.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Env, positive};
use crate::cli::ServeArgs;
use crate::secrets::fetch::FetchConfig;
use crate::secrets::origin::{Origin, OriginPolicy};
use crate::secrets::resolver::CacheConfig;
use crate::secrets::session_key::KeySource;
use crate::secrets::source::ParseContext;

/// How lookups are made and cached.
#[derive(Clone)]
pub struct LookupConfig {
    pub fetch: FetchConfig,
    pub cache: CacheConfig,
    pub session_key: KeySource,
    /// Values of the `--allow-env-header` variables, captured at start.
    pub env_headers: HashMap<String, SecretString>,
}

impl fmt::Debug for LookupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupConfig")
            .field("fetch", &self.fetch)
            .field("cache", &self.cache)
            .field("session_key", &self.session_key)
            .field("env_headers", &self.env_headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Periodic discovery of the user's secrets from the settings API.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// `{settings}/api/v1/sandboxes/{sid}/settings/secrets`.
    pub list_url: Url,
    pub interval: Duration,
}

/// The settings origin and the option or variable it came from.
pub(super) type SettingsOrigin = (&'static str, Origin);

/// `--settings-url`, else the origin of `OH_WEBHOOKS_0_BASE_URL`; plain http only to
/// loopback unless `--allow-insecure-settings`.
pub(super) fn settings_origin(args: &ServeArgs, env: &Env) -> Result<Option<SettingsOrigin>, ConfigError> {
    let (option, raw) = match (&args.settings_url, env.get("OH_WEBHOOKS_0_BASE_URL")) {
        (Some(u), _) => ("--settings-url", u.as_str()),
        (None, Some(u)) => ("OH_WEBHOOKS_0_BASE_URL", u),
        (None, None) => return Ok(None),
    };
    let origin = origin_of(option, raw)?;
    if origin.scheme() == "http" && !origin.is_loopback() && !args.allow_insecure_settings {
        return Err(ConfigError::Invalid {
            option,
            reason: "plain http to a non-loopback settings origin is refused (--allow-insecure-settings \
                     allows it)"
                .into(),
        });
    }
    Ok(Some((option, origin)))
}

/// What descriptor parsing needs: the allow-list, the base for relative URLs and the
/// variables `env_headers` may read.
pub(super) fn sources(
    args: &ServeArgs,
    env: &Env,
    settings: Option<&SettingsOrigin>,
    max_value_bytes: usize,
) -> Result<ParseContext, ConfigError> {
    let mut others = Vec::new();
    for raw in &args.allow_lookup_origins {
        others.push(origin_of("--allow-lookup-origin", raw)?);
    }
    let internal_base = match env.get("OH_INTERNAL_SERVER_URL") {
        Some(raw) => {
            let option = "OH_INTERNAL_SERVER_URL";
            let url = Url::parse(raw).map_err(|source| ConfigError::Url { option, source })?;
            others.push(Origin::of(&url).map_err(|source| ConfigError::Origin { option, source })?);
            Some(url)
        }
        None => None,
    };
    for var in &args.allow_env_headers {
        if !crate::secrets::value::is_env_name(var) {
            return Err(ConfigError::Invalid {
                option: "--allow-env-header",
                reason: format!("{var} is not an environment variable name"),
            });
        }
    }
    Ok(ParseContext {
        policy: OriginPolicy::new(settings.iter().map(|(_, o)| o.clone()).collect(), others),
        internal_base,
        allowed_env_headers: args.allow_env_headers.clone(),
        max_value_bytes,
    })
}

fn origin_of(option: &'static str, raw: &str) -> Result<Origin, ConfigError> {
    let url = Url::parse(raw).map_err(|source| ConfigError::Url { option, source })?;
    Origin::of(&url).map_err(|source| ConfigError::Origin { option, source })
}

pub(super) fn lookup_config(args: &ServeArgs, env: &Env) -> Result<LookupConfig, ConfigError> {
    let timeout = positive("--lookup-timeout", args.lookup_timeout)?;
    let max_value_bytes = positive("--max-value-bytes", args.max_value_bytes)?;
    let max_upstream = positive("--max-upstream", args.max_upstream)?;
    let proxy = match &args.lookup_proxy {
        Some(p) => {
            Some(Url::parse(p).map_err(|source| ConfigError::Url { option: "--lookup-proxy", source })?)
        }
        None => None,
    };
    let mut resolve_overrides = Vec::new();
    for item in &args.lookup_resolve {
        let (host, ip) = item
            .split_once('=')
            .and_then(|(h, ip)| Some((h.to_ascii_lowercase(), ip.parse::<IpAddr>().ok()?)))
            .ok_or_else(|| ConfigError::Invalid {
                option: "--lookup-resolve",
                reason: format!("{item} is not HOST=IP"),
            })?;
        resolve_overrides.push((host, ip));
    }
    let session_key = match &args.session_key_file {
        Some(path) => KeySource::File(path.clone()),
        None => KeySource::Fixed(
            env.get("OH_SESSION_API_KEYS_0")
                .or_else(|| env.get("SESSION_API_KEY"))
                .map(|k| SecretString::from(k.to_owned())),
        ),
    };
    let env_headers = args
        .allow_env_headers
        .iter()
        .filter_map(|var| Some((var.clone(), SecretString::from(env.get(var)?.to_owned()))))
        .collect();
    Ok(LookupConfig {
        fetch: FetchConfig {
            timeout: Duration::from_secs(timeout),
            max_value_bytes,
            proxy,
            extra_ca_file: args.extra_ca_file.clone(),
            resolve_overrides,
            ..FetchConfig::default()
        },
        cache: CacheConfig {
            ttl: Duration::from_secs(args.cache_ttl),
            capacity: args.cache_capacity,
            max_upstream,
            max_stale: Duration::from_secs(args.max_stale),
        },
        session_key,
        env_headers,
    })
}

/// Discovery runs when there is both a sandbox id (`--sandbox-id`, else `SANDBOX_ID`) and a
/// settings origin.
pub(super) fn discovery(
    args: &ServeArgs,
    env: &Env,
    settings: Option<&SettingsOrigin>,
) -> Result<Option<DiscoveryConfig>, ConfigError> {
    let (Some(sid), Some((option, origin))) =
        (args.sandbox_id.as_deref().or(env.get("SANDBOX_ID")), settings)
    else {
        return Ok(None);
    };
    let mut list_url =
        Url::parse(&origin.to_string()).map_err(|source| ConfigError::Url { option, source })?;
    list_url
        .path_segments_mut()
        .map_err(|()| ConfigError::Invalid {
            option,
            reason: "the settings origin cannot take a path".into(),
        })?
        .extend(["api", "v1", "sandboxes", sid, "settings", "secrets"]);
    Ok(Some(DiscoveryConfig { list_url, interval: Duration::from_secs(args.discovery_interval.max(1)) }))
}
