//! The egress CA: made at start (ECDSA P-256, `CA:TRUE`, keyCertSign), its key only in
//! memory; it signs the leaf certificates the proxy presents for bound hosts.
//!
//! Leaves carry what strict verifiers (Python 3.13's `VERIFY_X509_STRICT`, OpenSSL's
//! `-x509_strict`, webpki) insist on: a DNS (or IP) subject alternative name, authority and
//! subject key identifiers, `CA:FALSE`, the serverAuth extended key usage and a short
//! validity. All leaves share one P-256 key made with the CA, so a thousand cached leaves cost
//! a thousand small DER certificates, not a thousand keys.
//!
//! Not here: when a tunnel is intercepted (the proxy decides) or the bundle file commands
//! trust (the command pipeline writes it from [`Ca::cert_pem`]).
//!
//! Invariant: neither private key is ever written anywhere; they exist only inside the
//! rcgen and rustls key objects this value holds.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use rand::RngCore;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::sign::{CertifiedKey, SigningKey};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Leaves kept at most; a command touching more bound hosts than this only costs re-signing.
pub const LEAF_CACHE_CAPACITY: u64 = 10_000;

/// How long the CA certificate is valid. The CA dies with the process; the window only has to
/// outlive any realistic run.
const CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a leaf is valid; the cache drops it well before, so a presented leaf is never stale.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a leaf stays cached.
const LEAF_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Both certificates start this far in the past, for clients whose clock runs a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);
/// Longest common name X.509 allows (ub-common-name).
const MAX_COMMON_NAME: usize = 64;

/// Why a certificate could not be made. Carries host names only.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Key generation or signing failed.
    #[error("egress CA could not make a certificate: {0}")]
    Rcgen(String),
    /// rustls refused the generated key.
    #[error("egress CA key unusable by rustls: {0}")]
    Key(String),
    /// The host cannot be a subject alternative name.
    #[error("cannot make a certificate for host {0:?}")]
    BadHost(String),
}

/// The in-memory CA and its cache of leaf certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    cert_pem: String,
    /// The one key every leaf certifies, as rcgen needs it to sign and rustls to serve.
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn SigningKey>,
    leaves: Cache<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("cached_leaves", &self.leaves.entry_count()).finish_non_exhaustive()
    }
}

impl Ca {
    /// Makes a fresh CA (and the leaf key) in memory.
    pub fn new() -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "secret-sidecar egress CA");
        params.distinguished_name.push(DnType::OrganizationName, "secret-sidecar");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let pkcs8 = Zeroizing::new(leaf_key.serialize_der());
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_slice()));
        let leaf_signer =
            rustls::crypto::ring::sign::any_ecdsa_type(&der).map_err(|e| CaError::Key(e.to_string()))?;

        let leaves = Cache::builder().max_capacity(LEAF_CACHE_CAPACITY).time_to_live(LEAF_CACHE_TTL).build();
        Ok(Self { cert, key, cert_pem, leaf_key, leaf_signer, leaves })
    }

    /// The CA certificate, PEM, for the bundle commands trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The leaf for `host` (a DNS name or an IP literal, no port), from the cache or made now.
    pub fn leaf_for(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if ServerName::try_from(host.as_str()).is_err() {
            return Err(CaError::BadHost(host));
        }
        self.leaves.try_get_with_by_ref(&host, || self.make_leaf(&host)).map_err(|e| match &*e {
            CaError::Rcgen(m) => CaError::Rcgen(m.clone()),
            CaError::Key(m) => CaError::Key(m.clone()),
            CaError::BadHost(h) => CaError::BadHost(h.clone()),
        })
    }

    /// Leaves currently cached (the count settles after pending cache maintenance).
    pub fn cached_leaves(&self) -> u64 {
        self.leaves.run_pending_tasks();
        self.leaves.entry_count()
    }

    fn make_leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(|_| CaError::BadHost(host.to_owned()))?),
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        params.distinguished_name = DistinguishedName::new();
        if host.len() <= MAX_COMMON_NAME {
            params.distinguished_name.push(DnType::CommonName, host);
        }
        params.distinguished_name.push(DnType::OrganizationName, "secret-sidecar egress");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        let leaf = params.signed_by(&self.leaf_key, &self.cert, &self.key)?;
        Ok(Arc::new(CertifiedKey::new(vec![leaf.der().clone()], Arc::clone(&self.leaf_signer))))
    }
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        Self::Rcgen(e.to_string())
    }
}

/// A positive, non-zero 127-bit serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::UnixTime;

    fn verifier(ca: &Ca) -> Arc<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap()
    }

    #[test]
    fn webpki_accepts_leaves_for_their_host_only() {
        let ca = Ca::new().unwrap();
        let v = verifier(&ca);
        let leaf = ca.leaf_for("API.Test.Example.").unwrap();
        let name = ServerName::try_from("api.test.example").unwrap();
        v.verify_server_cert(&leaf.cert[0], &[], &name, &[], UnixTime::now()).unwrap();
        let other = ServerName::try_from("evil.example").unwrap();
        assert!(v.verify_server_cert(&leaf.cert[0], &[], &other, &[], UnixTime::now()).is_err());
        let ip = ca.leaf_for("127.0.0.1").unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        v.verify_server_cert(&ip.cert[0], &[], &name, &[], UnixTime::now()).unwrap();
    }

    #[test]
    fn another_ca_does_not_verify() {
        let (a, b) = (Ca::new().unwrap(), Ca::new().unwrap());
        let leaf = a.leaf_for("api.test.example").unwrap();
        let name = ServerName::try_from("api.test.example").unwrap();
        assert!(verifier(&b).verify_server_cert(&leaf.cert[0], &[], &name, &[], UnixTime::now()).is_err());
    }

    #[test]
    fn leaves_are_cached_per_host() {
        let ca = Ca::new().unwrap();
        let a = ca.leaf_for("a.example").unwrap();
        let again = ca.leaf_for("A.EXAMPLE").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        ca.leaf_for("b.example").unwrap();
        assert_eq!(ca.cached_leaves(), 2);
        assert!(matches!(ca.leaf_for("bad host\n"), Err(CaError::BadHost(_))));
    }

    #[test]
    fn pem_is_a_certificate_and_debug_shows_no_key() {
        let ca = Ca::new().unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let debug = format!("{ca:?}");
        assert!(!debug.contains("PRIVATE") && debug.contains("cached_leaves"), "{debug}");
    }
}
