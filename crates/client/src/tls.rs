//! TLS for every HTTP client of the project (the agent's, the site tools', a child site's
//! connection to its parent): which certificates an `https://` connection trusts, and a
//! sentence for a failed handshake. `invsite init` also reads its `--tls-ca` and
//! `--parent-ca-cert` files with [`read_ca`], so a file the clients would refuse is refused
//! when the site is made.
//!
//! rustls with the ring provider (no aws-lc-rs), through ureq. A client trusts exactly the CA certificates
//! of the PEM file it is given (`--ca-cert`; the site's own `tls/ca.pem` for the tools), or,
//! without one, the Mozilla roots built into the binary (webpki-roots), so a site whose
//! certificate comes from a public CA needs no `--ca-cert`. The operating system's store is
//! not read: what an agent trusts does not change with the host it runs on.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

/// The TLS settings of a client that trusts the CA certificates in `ca` (a PEM file), or the
/// built-in Mozilla roots when `ca` is `None`. Fails with a sentence when the file cannot be
/// read or holds no certificate.
pub fn client_config(ca: Option<&Path>) -> Result<TlsConfig, String> {
    let roots = match ca {
        Some(path) => RootCerts::Specific(Arc::new(read_ca(path)?)),
        None => RootCerts::WebPki,
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .build())
}

/// The certificates of a PEM file (other PEM sections, such as a key, are skipped).
pub fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA certificate {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "{} is not a PEM certificate file: {e}",
                    path.display()
                ));
            }
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Why a TLS handshake failed, when `e` is such a failure, as a sentence starting with
/// "TLS:". `None` for every other error (connection refused, a timeout, HTTP).
pub fn failure(e: &ureq::Error) -> Option<String> {
    let tls = match e {
        ureq::Error::Rustls(r) => r,
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        ureq::Error::Tls(reason) => return Some(format!("TLS: {reason}")),
        _ => return None,
    };
    use rustls::CertificateError as C;
    Some(match tls {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "TLS: the site's certificate does not name the host in the URL".to_string(),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "TLS: the site's certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "TLS: the site's certificate is not valid yet (is this machine's clock right?)"
                .to_string()
        }
        rustls::Error::InvalidCertificate(other) => {
            format!("TLS: certificate not trusted ({other:?})")
        }
        // What a client reads when it speaks TLS to a plain HTTP port.
        rustls::Error::InvalidMessage(_) => {
            "TLS: the server did not answer in TLS; does it serve plain http:// instead?"
                .to_string()
        }
        other => format!("TLS: {other}"),
    })
}

/// Whether a failed plain `http://` request looks like one sent to a TLS port: the server
/// answered with bytes that are not HTTP (a TLS alert) or closed the connection at once.
pub fn looks_like_tls_port(url: &str, e: &ureq::Error) -> bool {
    url.starts_with("http://")
        && match e {
            ureq::Error::Protocol(_) => true,
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::InvalidData
            ),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.pem");
        assert!(
            read_ca(&missing)
                .unwrap_err()
                .contains("cannot read the CA certificate")
        );
        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(
            read_ca(&empty)
                .unwrap_err()
                .contains("holds no PEM certificate")
        );
        assert!(client_config(Some(&empty)).is_err());
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn certificate_errors_read_as_tls_failures() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let m = failure(&ureq::Error::Io(io)).unwrap();
        assert!(m.starts_with("TLS: certificate not trusted"), "{m}");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(failure(&ureq::Error::Io(refused)), None);
    }
}
