//! The client of `status --from`: one GET of a running exporter's `/api/v1/proposals`, or of
//! `/api/v1/proposals/{symbol}`, over plain HTTP or TLS (the given CAs, an optional client
//! certificate), with basic auth, a timeout and a size cap. Returns the exporter's view or the
//! symbol's story; printing them is `status`'s.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};

use crate::source::SettingsError;
use serde::de::DeserializeOwned;

use crate::view::{Story, View, path_segment};

/// How long `--from` waits for the exporter's whole answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from an exporter; the document takes about 600 bytes per symbol.
const MAX_DOCUMENT: usize = 64 << 20;

/// A running exporter to read, from a checked `--from` URL.
#[derive(Clone, Debug)]
pub struct Exporter {
    /// The URL of its `/api/v1/proposals`, for messages.
    pub url: String,
    /// The host without the brackets of an IPv6 literal, for connecting.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as given, for the Host header.
    pub authority: String,
    /// The path of `/api/v1/proposals`, for the request line.
    pub path: String,
    /// For an `https://` URL: whom to trust and what to show.
    pub tls: Option<ClientTls>,
    /// Basic-auth credentials, for an exporter whose web config has users.
    pub credentials: Option<Credentials>,
}

/// The files of a TLS connection to an exporter.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// PEM certificates of the CAs the exporter's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM certificate and key, for an exporter that requires a client certificate.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    // The password stays out of every message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why `status` could not read: its Redis settings, or the exporter at `--from`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot connect to the exporter at {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("HTTP error from the exporter at {url}: {source}")]
    Http { url: String, source: hyper::Error },
    #[error("no answer from the exporter at {url} within {}s", HTTP_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("TLS handshake with the exporter at {url} failed: {source}")]
    Handshake { url: String, source: std::io::Error },
    #[error("{0}")]
    TlsSetup(#[from] TlsSetupError),
    #[error(
        "the exporter at {url} asks for credentials (401): give --auth.username and \
         --auth.password-file or HARVEST_STATUS_PASSWORD"
    )]
    CredentialsNeeded { url: String },
    #[error("the exporter at {url} refused the credentials of user {username:?} (401)")]
    CredentialsRefused { url: String, username: String },
    #[error("the exporter at {url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("the exporter at {url} answered {status}: {error}")]
    Answered {
        url: String,
        status: StatusCode,
        error: String,
    },
    #[error("the exporter at {url} knows no symbol {symbol:?}: {error}")]
    UnknownSymbol {
        url: String,
        symbol: String,
        error: String,
    },
    #[error("the exporter at {url} sent more than {MAX_DOCUMENT} bytes")]
    TooLarge { url: String },
    #[error("the exporter at {url} sent an unreadable document: {source}")]
    Document {
        url: String,
        source: serde_json::Error,
    },
}

/// Why the TLS client cannot be set up from its files.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no certificate in the PEM data")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {source}")]
    Rustls {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{host:?} cannot be checked against a certificate: {source}")]
    ServerName {
        host: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

/// The exporter's view, from its `/api/v1/proposals`.
pub(super) async fn fetch(exporter: &Exporter) -> Result<View, StatusError> {
    let target = Target {
        path: exporter.path.clone(),
        url: exporter.url.clone(),
    };
    get(exporter, &target).await
}

/// One symbol's story, from `/api/v1/proposals/{symbol}`, and the URL it was read from.
pub(super) async fn fetch_story(
    exporter: &Exporter,
    symbol: &str,
) -> Result<(Story, String), StatusError> {
    let encoded = path_segment(symbol);
    let target = Target {
        path: format!("{}/{encoded}", exporter.path),
        url: format!("{}/{encoded}", exporter.url),
    };
    match get(exporter, &target).await {
        Ok(story) => Ok((story, target.url)),
        // Only the endpoint answers a 404 with a JSON error: an exporter without it says nothing
        // about the symbol.
        Err(StatusError::Answered { url, status, error }) if status == StatusCode::NOT_FOUND => {
            Err(StatusError::UnknownSymbol {
                url,
                symbol: symbol.to_owned(),
                error,
            })
        }
        Err(error) => Err(error),
    }
}

/// Where one request goes: the path for the request line, the URL for messages.
struct Target {
    path: String,
    url: String,
}

async fn get<T: DeserializeOwned>(exporter: &Exporter, target: &Target) -> Result<T, StatusError> {
    tokio::time::timeout(HTTP_TIMEOUT, connect_and_get(exporter, target))
        .await
        .unwrap_or_else(|_| {
            Err(StatusError::Timeout {
                url: target.url.clone(),
            })
        })
}

async fn connect_and_get<T: DeserializeOwned>(
    exporter: &Exporter,
    target: &Target,
) -> Result<T, StatusError> {
    let url = &target.url;
    // Bad files fail before anything is sent.
    let tls = exporter
        .tls
        .as_ref()
        .map(|tls| {
            let name = rustls::pki_types::ServerName::try_from(exporter.host.clone()).map_err(
                |source| TlsSetupError::ServerName {
                    host: exporter.host.clone(),
                    source,
                },
            )?;
            Ok::<_, TlsSetupError>((TlsConnector::from(Arc::new(client_config(tls)?)), name))
        })
        .transpose()?;
    let stream = TcpStream::connect((exporter.host.as_str(), exporter.port))
        .await
        .map_err(|source| StatusError::Connect {
            url: url.clone(),
            source,
        })?;
    match tls {
        None => exchange(stream, exporter, target).await,
        Some((connector, name)) => {
            let stream =
                connector
                    .connect(name, stream)
                    .await
                    .map_err(|source| StatusError::Handshake {
                        url: url.clone(),
                        source,
                    })?;
            exchange(stream, exporter, target).await
        }
    }
}

/// The TLS client of `--from https://`: only the given CAs are trusted, HTTP/1.1 is offered.
fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&tls.ca_file)? {
        roots.add(cert).map_err(|source| TlsSetupError::Rustls {
            path: tls.ca_file.clone(),
            source,
        })?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let key = std::fs::read(key_file).map_err(|source| TlsSetupError::Read {
                path: key_file.clone(),
                source,
            })?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).map_err(|source| {
                TlsSetupError::Pem {
                    path: key_file.clone(),
                    source,
                }
            })?;
            builder
                .with_client_auth_cert(certificates(cert_file)?, key)
                .map_err(|source| TlsSetupError::Rustls {
                    path: cert_file.clone(),
                    source,
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM file, at least one.
fn certificates(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsSetupError> {
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// One request for the document over an open connection, plain or TLS.
async fn exchange<S, T>(stream: S, exporter: &Exporter, target: &Target) -> Result<T, StatusError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: DeserializeOwned,
{
    let url = &target.url;
    let http = |source| StatusError::Http {
        url: url.clone(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // Drives the connection; it ends with the response, as the request asks to close.
    tokio::spawn(connection);
    let mut request = Request::new(String::new());
    *request.uri_mut() = target
        .path
        .parse()
        .expect("a checked --from URL and an encoded symbol");
    let headers = request.headers_mut();
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&exporter.authority).expect("a checked --from URL"),
    );
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(credentials) = &exporter.credentials {
        headers.insert(header::AUTHORIZATION, basic_authorization(credentials));
    }
    let response = sender.send_request(request).await.map_err(http)?;
    match (response.status(), &exporter.credentials) {
        (StatusCode::OK, _) => {}
        (StatusCode::UNAUTHORIZED, None) => {
            return Err(StatusError::CredentialsNeeded { url: url.clone() });
        }
        (StatusCode::UNAUTHORIZED, Some(credentials)) => {
            return Err(StatusError::CredentialsRefused {
                url: url.clone(),
                username: credentials.username.clone(),
            });
        }
        (status, _) => {
            let error = read_body(response.into_body(), url)
                .await
                .ok()
                .and_then(|body| serde_json::from_slice::<ErrorDocument>(&body).ok());
            return Err(match error {
                Some(ErrorDocument { mut error }) => StatusError::Answered {
                    url: url.clone(),
                    status,
                    error: {
                        // It reaches the terminal through stderr.
                        super::clean(&mut error);
                        error
                    },
                },
                None => StatusError::Status {
                    url: url.clone(),
                    status,
                },
            });
        }
    }
    let document = read_body(response.into_body(), url).await?;
    serde_json::from_slice(&document).map_err(|source| StatusError::Document {
        url: url.clone(),
        source,
    })
}

/// What the exporter's API answers a request it refuses with.
#[derive(serde::Deserialize)]
struct ErrorDocument {
    error: String,
}

/// The whole body, at most [`MAX_DOCUMENT`] bytes.
async fn read_body(mut body: Incoming, url: &str) -> Result<Vec<u8>, StatusError> {
    let mut document = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|source| StatusError::Http {
            url: url.to_owned(),
            source,
        })?;
        if let Ok(data) = frame.into_data() {
            if document.len() + data.len() > MAX_DOCUMENT {
                return Err(StatusError::TooLarge {
                    url: url.to_owned(),
                });
            }
            document.extend_from_slice(&data);
        }
    }
    Ok(document)
}

/// `Authorization: Basic ...`, marked sensitive so that hyper never shows it.
fn basic_authorization(credentials: &Credentials) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_is_one_encoded_path_segment() {
        assert_eq!(path_segment("BTCUSDT"), "BTCUSDT");
        assert_eq!(path_segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(path_segment("BTC/USDT ?#%"), "BTC%2FUSDT%20%3F%23%25");
        assert_eq!(path_segment("é"), "%C3%A9");
        assert!(
            format!("/api/v1/proposals/{}", path_segment("a b/é?"))
                .parse::<hyper::Uri>()
                .is_ok()
        );
    }

    #[test]
    fn basic_authorization_is_encoded_and_sensitive() {
        let value = basic_authorization(&Credentials {
            username: "alice".into(),
            password: "s3cr3t".into(),
        });
        assert_eq!(value, "Basic YWxpY2U6czNjcjN0");
        assert!(value.is_sensitive());
        let debug = format!(
            "{:?}",
            Credentials {
                username: "alice".into(),
                password: "s3cr3t".into(),
            }
        );
        assert!(
            debug.contains("alice") && !debug.contains("s3cr3t"),
            "{debug}"
        );
    }
}
