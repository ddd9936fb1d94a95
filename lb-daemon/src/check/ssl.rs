//! `SSL_GET`: HTTP_GET over TLS (rustls). As keepalived does by default, the server's
//! certificate is not verified: the check is about the service answering, not its identity.
//! With `enable_sni` the Host name is sent as SNI.

use std::sync::{Arc, OnceLock};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{CheckError, Endpoint, Probe, http::HttpProbe, timed::Timed};

/// Accepts any certificate; signatures are still checked against the certificate presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration every SSL_GET and `genhash -S` uses.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, CheckError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Ok(Arc::new(config))
    });
    config.clone().map_err(CheckError::Tls)
}

/// The server name sent: `host` (without a port) as SNI when given, else the address
/// (rustls sends no SNI for an address).
pub fn server_name(host: Option<&str>, ip: std::net::IpAddr) -> Result<ServerName<'static>, CheckError> {
    match host.map(|h| h.split(':').next().unwrap_or(h).to_owned()) {
        Some(host) => ServerName::try_from(host).map_err(|e| CheckError::Tls(e.to_string())),
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

/// Opens a TLS session over `tcp`, with `sni` as server name if given.
pub async fn handshake(
    tcp: Timed<TcpStream>,
    ep: &Endpoint,
    sni: Option<&str>,
) -> Result<TlsStream<Timed<TcpStream>>, CheckError> {
    let name = server_name(sni, ep.addr.ip())?;
    TlsConnector::from(client_config()?).connect(name, tcp).await.map_err(|e| CheckError::Tls(e.to_string()))
}

/// One SSL_GET probe of url `url`, over a TLS connection of its own; each read and write,
/// the handshake's included, may take `connect_timeout` ([`super::timed`]).
pub async fn probe(check: &HttpProbe, url: usize, sni: bool) -> Result<Probe, CheckError> {
    let url = check.url(url)?;
    let tcp = super::tcp::connect_timed(&check.ep).await?;
    let tls = handshake(tcp, &check.ep, sni.then_some(url.host.as_str())).await?;
    check.check_url(tls, url).await?;
    Ok(Probe::Up)
}
