//! The server's TLS identity: the certificate and key files (PEM) made into
//! acceptors, one for the gRPC port (ALPN `h2`) and one for the HTTP/1.1
//! ports (`http/1.1`: the JSON/HTTP gateway, and the metrics port with
//! `--metrics-tls`), and replaced while the server runs when the files
//! change, so that a renewed certificate (cert-manager, Let's Encrypt)
//! needs no restart. The handshake itself is done in
//! [`crate::connections`].

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use parking_lot::RwLock;
use tokio_rustls::{TlsAcceptor, rustls};

/// An acceptor that a renewed certificate replaces: each connection takes
/// the one current when it arrives.
#[derive(Clone)]
pub(crate) struct SharedAcceptor(Arc<RwLock<TlsAcceptor>>);

impl SharedAcceptor {
    pub(crate) fn new(acceptor: TlsAcceptor) -> SharedAcceptor {
        SharedAcceptor(Arc::new(RwLock::new(acceptor)))
    }

    /// The acceptor for the next connection.
    pub(crate) fn current(&self) -> TlsAcceptor {
        self.0.read().clone()
    }

    fn replace(&self, acceptor: TlsAcceptor) {
        *self.0.write() = acceptor;
    }
}

impl std::fmt::Debug for SharedAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedAcceptor")
    }
}

/// A TLS acceptor for a PEM certificate chain and its PEM private key: TLS
/// 1.2 and 1.3 on ring, no client certificates, offering `protocol` by
/// ALPN: `h2` on the gRPC port (clients such as grpc-go require it),
/// `http/1.1` on the gateway (what its clients speak: curl, offering both,
/// then keeps to HTTP/1.1).
pub(crate) fn acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    protocol: &[u8],
) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("the key file holds no PEM private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![protocol.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The files' contents as last read: (certificate, key).
type Pems = (Vec<u8>, Vec<u8>);

/// The server's acceptors, and the files they come from.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The gRPC port's acceptor (ALPN `h2`).
    pub grpc: SharedAcceptor,
    /// The HTTP/1.1 ports' acceptor (ALPN `http/1.1`): the gateway's, and
    /// the metrics port's with `--metrics-tls`.
    pub http: SharedAcceptor,
    cert: PathBuf,
    key: PathBuf,
    loaded: Pems,
}

fn read(cert: &Path, key: &Path) -> anyhow::Result<Pems> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading the TLS key {}", key.display()))?;
    Ok((cert_pem, key_pem))
}

/// Both acceptors for one certificate and key.
fn acceptors((cert, key): &Pems) -> Result<(TlsAcceptor, TlsAcceptor), String> {
    Ok((
        acceptor(cert, key, b"h2")?,
        acceptor(cert, key, b"http/1.1")?,
    ))
}

impl Identity {
    /// Reads the certificate and key; an unusable pair stops startup with
    /// the reason.
    pub(crate) fn load(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
        let loaded = read(cert, key)?;
        let (grpc, http) = acceptors(&loaded)
            .map_err(|e| anyhow::anyhow!("the TLS certificate or key is not usable: {e}"))?;
        Ok(Identity {
            grpc: SharedAcceptor::new(grpc),
            http: SharedAcceptor::new(http),
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded,
        })
    }

    /// Rereads the files every `every` and, when they changed and make a
    /// usable pair, serves new connections with them; connections already
    /// open keep theirs. A pair that is not usable (the certificate renewed
    /// and the key not yet, say) is logged and counted once, and the one
    /// before stays. Runs until the task is dropped.
    pub(crate) async fn keep_current(mut self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the files were just read
        let mut refused: Option<Pems> = None;
        let mut unreadable: Option<String> = None;
        loop {
            tick.tick().await;
            let (cert, key) = (self.cert.clone(), self.key.clone());
            let pems = match tokio::task::spawn_blocking(move || read(&cert, &key)).await {
                Ok(Ok(pems)) => pems,
                Ok(Err(e)) => {
                    // A file being replaced can be missing for a moment:
                    // said once, not at every tick.
                    let e = format!("{e:#}");
                    if unreadable.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "cannot reread the TLS certificate; serving the one loaded");
                        unreadable = Some(e);
                    }
                    continue;
                }
                Err(_) => continue,
            };
            unreadable = None;
            if pems == self.loaded || refused.as_ref() == Some(&pems) {
                continue;
            }
            match acceptors(&pems) {
                Ok((grpc, http)) => {
                    self.grpc.replace(grpc);
                    self.http.replace(http);
                    self.loaded = pems;
                    refused = None;
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    metrics::counter!("offer_bandit_tls_reloads_total", "result" => "ok")
                        .increment(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, cert = %self.cert.display(), "the TLS certificate or key changed but is not usable; serving the one loaded");
                    metrics::counter!("offer_bandit_tls_reloads_total", "result" => "refused")
                        .increment(1);
                    refused = Some(pems);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        (cert.pem(), signing_key.serialize_pem())
    }

    #[test]
    fn unusable_certificates_and_keys_are_refused_with_a_reason() {
        let (cert, key) = pair();
        let err = |r: Result<TlsAcceptor, String>| r.err().unwrap_or_default();
        assert!(err(acceptor(b"", key.as_bytes(), b"h2")).contains("no certificate"));
        assert!(err(acceptor(cert.as_bytes(), b"not a key", b"h2")).contains("no PEM private key"));
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().expect("key").serialize_pem();
        assert!(err(acceptor(cert.as_bytes(), other.as_bytes(), b"h2")).contains("TLS identity"));
        assert!(acceptor(cert.as_bytes(), key.as_bytes(), b"h2").is_ok());
    }

    /// The acceptor's certificate, as a client sees it in the handshake.
    async fn served_certificate(shared: &SharedAcceptor) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server_side = shared.current();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = server_side.accept(tcp).await;
        });
        // Any certificate: the test reads it rather than trusting it.
        #[derive(Debug)]
        struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
        impl rustls::client::danger::ServerCertVerifier for AnyCert {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                message: &[u8],
                cert: &rustls::pki_types::CertificateDer<'_>,
                dss: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                rustls::crypto::verify_tls12_signature(
                    message,
                    cert,
                    dss,
                    &self.0.signature_verification_algorithms,
                )
            }
            fn verify_tls13_signature(
                &self,
                message: &[u8],
                cert: &rustls::pki_types::CertificateDer<'_>,
                dss: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                rustls::crypto::verify_tls13_signature(
                    message,
                    cert,
                    dss,
                    &self.0.signature_verification_algorithms,
                )
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.0.signature_verification_algorithms.supported_schemes()
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("handshake");
        let der = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .expect("a certificate");
        drop(tls);
        let _ = server.await;
        der
    }

    fn der_of(pem: &str) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("PEM")
            .as_ref()
            .to_vec()
    }

    /// A renewed certificate is served from the next check on; a renewal
    /// whose key does not match is refused and the one before kept; the
    /// pair completed later is taken.
    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (cert_a, key_a) = pair();
        std::fs::write(&cert_path, &cert_a).expect("write");
        std::fs::write(&key_path, &key_a).expect("write");
        let identity = Identity::load(&cert_path, &key_path).expect("load");
        let (grpc, http) = (identity.grpc.clone(), identity.http.clone());
        let watcher = tokio::spawn(identity.keep_current(Duration::from_millis(50)));
        assert_eq!(served_certificate(&grpc).await, der_of(&cert_a));

        // Renewed: the certificate first, its key not yet.
        let (cert_b, key_b) = pair();
        std::fs::write(&cert_path, &cert_b).expect("write");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            served_certificate(&grpc).await,
            der_of(&cert_a),
            "a certificate without its key is not served"
        );
        // Then the key: both ports serve the new pair.
        std::fs::write(&key_path, &key_b).expect("write");
        let mut served = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            served = served_certificate(&grpc).await;
            if served == der_of(&cert_b) {
                break;
            }
        }
        assert_eq!(
            served,
            der_of(&cert_b),
            "the renewed certificate was not taken"
        );
        assert_eq!(served_certificate(&http).await, der_of(&cert_b));
        watcher.abort();
    }
}
