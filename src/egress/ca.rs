//! The egress CA: made at start (ECDSA P-256, `CA:TRUE`, keyCertSign), its key only in
//! memory; it signs the leaf certificates the proxy presents for bound hosts.

/// The in-memory CA.
pub struct Ca {
    cert_pem: String,
}

impl Ca {
    /// The CA certificate, PEM, for the bundle commands trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}
