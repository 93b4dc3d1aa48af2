//! One HTTPS request to the API server. A fresh connection each time
//! (drainit makes a handful per drain, so no pool), TLS verified against
//! the service account's CA only, the bearer token read from its file for
//! each request (projected tokens rotate). The caller bounds the time.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest answer drainit reads (a Pod is a few KiB to tens of KiB).
const MAX_BODY: usize = 1 << 20;

/// The API server as the in-cluster convention names it.
pub struct ApiServer {
    /// `host:port` for the connection and the `Host` header.
    authority: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    token_file: PathBuf,
}

/// An answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Bytes,
}

/// An answer whose body is read as it comes.
pub struct Streamed {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: hyper::body::Incoming,
    _driver: DriverGuard,
}

/// The task that drives a connection; ends it when dropped.
struct DriverGuard(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The token file is gone or empty.
    #[error("no service account token in {path}: {why}")]
    Token {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// No TCP connection.
    #[error("cannot connect to the API at {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (a certificate the CA did not sign...).
    #[error("TLS with the API failed: {0}")]
    Tls(std::io::Error),
    /// HTTP failed.
    #[error("HTTP with the API failed: {0}")]
    Http(String),
}

/// Why the API server cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA file cannot be read or holds no certificate.
    #[error("no usable CA certificate in {path}: {why}")]
    Ca {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The host is neither an IP address nor a DNS name.
    #[error("KUBERNETES_SERVICE_HOST {0:?} is not a host name")]
    Host(String),
}

impl ApiServer {
    /// The API server at `host:port`, trusted only through `ca_file`,
    /// with the bearer token read from `token_file` for each request.
    pub fn new(
        host: &str,
        port: u16,
        ca_file: PathBuf,
        token_file: PathBuf,
    ) -> Result<ApiServer, SetupError> {
        let ca_error = |why: String| SetupError::Ca {
            path: ca_file.display().to_string(),
            why,
        };
        let pem = std::fs::read(&ca_file).map_err(|error| ca_error(error.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|error| ca_error(error.to_string()))?;
            roots
                .add(cert)
                .map_err(|error| ca_error(error.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_error("no certificate".to_string()));
        }
        // ring, not aws-lc-rs: pure Rust and assembly, no cmake, small. It
        // has no post-quantum key exchange, hence the deprecation notice;
        // X25519 and the NIST curves are what API servers offer today.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ca_error(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| SetupError::Host(host.to_string()))?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(ApiServer {
            authority,
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            token_file,
        })
    }

    /// Sends one request (`body` as JSON) and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, RequestError> {
        let stream = self.open(method, path, body).await?;
        let status = stream.status;
        let body = Limited::new(stream.body, MAX_BODY)
            .collect()
            .await
            .map_err(|error| RequestError::Http(error.to_string()))?
            .to_bytes();
        Ok(Answer { status, body })
    }

    /// Sends one request and returns the answer's status with its body
    /// still to read (a watch); the connection lives as long as the
    /// [`Streamed`] value.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Streamed, RequestError> {
        let token = self.token()?;
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| RequestError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(RequestError::Tls)?;
        let http = |error: hyper::Error| RequestError::Http(error.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        let driver = DriverGuard(tokio::spawn(connection));
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("drainit/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| RequestError::Http(error.to_string()))?;
        let response = sender.send_request(request).await.map_err(http)?;
        Ok(Streamed {
            status: response.status().as_u16(),
            body: response.into_body(),
            _driver: driver,
        })
    }

    /// The token as it is now (a projected token is rewritten in place).
    fn token(&self) -> Result<String, RequestError> {
        let error = |why: String| RequestError::Token {
            path: self.token_file.display().to_string(),
            why,
        };
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| error(e.to_string()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(error("the file is empty".to_string()));
        }
        Ok(token.to_string())
    }
}
