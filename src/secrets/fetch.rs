//! TEMPORARY STUB (replaced by the real fetcher).
use super::value::{SecretName, SecretValue};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

pub struct FetchConfig {
    pub timeout: Duration,
    pub max_value_bytes: usize,
    pub proxy: Option<Url>,
    pub extra_ca_file: Option<PathBuf>,
    pub resolve_overrides: Vec<(String, IpAddr)>,
    pub retry_base: Duration,
    pub max_attempts: u32,
}
#[derive(Debug, thiserror::Error)]
#[error("build")]
pub struct FetchBuildError;
#[derive(Debug, thiserror::Error, Clone)]
pub enum FetchError {
    #[error("lookup for secret {name} failed: status {status}")]
    Status { name: SecretName, status: u16 },
}
impl FetchError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
        }
    }
    pub fn is_transient(&self) -> bool {
        self.status().is_some_and(|s| s == 429 || s >= 500)
    }
}
pub struct Fetcher;
impl Fetcher {
    pub fn new(_cfg: FetchConfig) -> Result<Self, FetchBuildError> {
        Ok(Self)
    }
    pub async fn fetch(
        &self,
        name: &SecretName,
        _url: &Url,
        _headers: http::HeaderMap,
    ) -> Result<Option<SecretValue>, FetchError> {
        Err(FetchError::Status { name: name.clone(), status: 500 })
    }
}
