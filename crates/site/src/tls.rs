//! The site's TLS: the rustls server configuration (ring provider) from a certificate and key
//! in PEM, the listener that hands axum connections whose handshake is done, and the CA and
//! certificate `invsite init --tls self-signed` makes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use invsync_proto::SiteCode;
use invsync_proto::exit::Exit;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::connections::{Admitted, Connections};
use crate::datadir::{SiteDir, TlsFiles, write_private};

/// How long a client may take to complete its TLS handshake; a slower one is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for axum to take them.
const QUEUE: usize = 64;

/// The rustls server configuration for a certificate chain and its key (PEM files), with the
/// ring provider. A file that cannot be read, holds nothing usable, or a key that does not
/// match the certificate is refused with exit 2.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let unusable = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Exit::usage(format!("cannot use the TLS {what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| unusable("certificate", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(unusable("certificate", cert, &"no PEM certificate in it").into());
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| unusable("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the ring provider supports no TLS version")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            Exit::usage(format!(
                "cannot serve TLS with the certificate {} and the key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener for the connection loop that accepts TCP connections within the connection
/// bounds (before the handshake, which holds a descriptor too) and completes their TLS
/// handshakes in tasks of their own, so a slow or silent client cannot hold up the others; the
/// loop receives only connections whose handshake succeeded. Dropping it (the loop does when a
/// graceful shutdown begins) stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Admitted)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        connections: Arc<Connections>,
    ) -> TlsListener {
        let (tx, ready) = mpsc::channel(QUEUE);
        let accepting = tokio::spawn(accept_loop(
            listener,
            connections,
            TlsAcceptor::from(config),
            tx,
        ));
        TlsListener { ready, accepting }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl crate::http::Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> (Self::Io, Admitted) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (it does not, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    connections: Arc<Connections>,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Admitted)>,
) {
    loop {
        // Failed accepts are logged, counted and retried after a pause there.
        let (tcp, admitted) = connections.accept(&listener).await;
        let peer = admitted.peer;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the server is shutting down; the connection is dropped.
                    let _ = ready.send((tls, admitted)).await;
                }
                // A client that does not trust the certificate, speaks plain HTTP to this port,
                // or is a port scanner: its own side reports it.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out."),
            }
        });
    }
}

/// `invsite init --tls self-signed`: a CA of the site's own and a certificate it signs for
/// `names` (host names and addresses), written to `tls/` in the data directory: `ca.pem` (what
/// agents get as `--ca-cert`), `cert.pem` and `key.pem` (mode 0600). The CA's key is not kept:
/// it signs this one certificate and can sign nothing else; a new certificate means a new CA.
/// Both are valid for ten years from the start of this year.
pub fn create_self_signed(dir: &SiteDir, code: &SiteCode, names: &[String]) -> Result<TlsFiles> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let year = this_year();
    let not_before = rcgen::date_time_ymd(year, 1, 1);
    let not_after = rcgen::date_time_ymd(year + 10, 1, 1);

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, format!("invsync site {code} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().context("generating the site's key")?;
    let mut site = CertificateParams::new(names.to_vec())
        .map_err(|e| Exit::usage(format!("cannot put {names:?} in a certificate: {e}")))?;
    site.distinguished_name
        .push(DnType::CommonName, format!("invsync site {code}"));
    site.is_ca = IsCa::ExplicitNoCa;
    site.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    site.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    site.use_authority_key_identifier_extension = true;
    site.not_before = not_before;
    site.not_after = not_after;
    let cert = site
        .signed_by(&key, &issuer)
        .context("signing the site's certificate")?;

    let tls = dir.tls_dir();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tls)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("cannot create {}", tls.display()))?;
    }
    let files = TlsFiles {
        cert: "tls/cert.pem".into(),
        key: "tls/key.pem".into(),
        ca: Some("tls/ca.pem".into()),
    };
    write_private(&dir.path_of(&files.key), key.serialize_pem().as_bytes())?;
    for (path, pem) in [
        (&files.cert, cert.pem()),
        (files.ca.as_ref().expect("set above"), ca_cert.pem()),
    ] {
        let path = dir.path_of(path);
        std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files)
}

/// The current year (UTC), from the RFC 3339 form of the clock.
fn this_year() -> i32 {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2025)
}

/// The names a self-signed certificate holds: `localhost`, the loopback addresses, the listen
/// address unless it is "any" (then this machine's host name), and the host of `--url`.
pub fn self_signed_names(listen: &str, url: Option<&str>) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut add = |n: String| {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                add(host.trim().to_string());
            }
        }
        Ok(a) => add(a.ip().to_string()),
        Err(_) => {}
    }
    if let Some(host) = url.and_then(url_host) {
        add(host);
    }
    names
}

/// The host of an `http(s)://host[:port][/path]` URL, without brackets around IPv6.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://site.example:8350/x").as_deref(),
            Some("site.example")
        );
        assert_eq!(url_host("https://[::1]:8350").as_deref(), Some("::1"));
        assert_eq!(url_host("http://10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(url_host("nope"), None);
    }

    #[test]
    fn self_signed_names_cover_loopback_and_the_listen_address() {
        let names = self_signed_names("10.1.2.3:8350", Some("https://inv.example:443"));
        for n in ["localhost", "127.0.0.1", "::1", "10.1.2.3", "inv.example"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        assert_eq!(self_signed_names("127.0.0.1:0", None).len(), 3);
    }

    #[test]
    fn a_self_signed_certificate_serves_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = SiteDir {
            root: tmp.path().to_path_buf(),
        };
        let code = SiteCode::parse("S01").unwrap();
        let files =
            create_self_signed(&dir, &code, &self_signed_names("127.0.0.1:0", None)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path_of(&files.key)), 0o600);
        assert_eq!(mode(&dir.tls_dir()), 0o700);
        server_config(&dir.path_of(&files.cert), &dir.path_of(&files.key)).unwrap();
        // The certificate with another key is refused.
        let other = tempfile::tempdir().unwrap();
        let other = SiteDir {
            root: other.path().to_path_buf(),
        };
        let files2 = create_self_signed(&other, &code, &["localhost".to_string()]).unwrap();
        let err =
            server_config(&dir.path_of(&files.cert), &other.path_of(&files2.key)).unwrap_err();
        assert!(err.to_string().contains("cannot serve TLS"), "{err}");
    }
}
