//! The `tls_server_config` section: the listener's rustls configuration (versions, client
//! certificates) and its certificate, read again from its files when they change on disk.
//! Parsing the rest of the file and applying it are `webconfig`'s and `server`'s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    cert: Option<String>,
    key: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

/// Why `tls_server_config` cannot make a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{what}: {cause}")]
    Pem {
        what: &'static str,
        cause: rustls::pki_types::pem::Error,
    },
    #[error("{what}: {cause}")]
    Rustls {
        what: &'static str,
        cause: rustls::Error,
    },
    #[error("client_ca: {cause}")]
    ClientVerifier {
        cause: rustls::server::VerifierBuilderError,
    },
    #[error("{0}")]
    Unsupported(String),
}

type Versions = Vec<&'static rustls::SupportedProtocolVersion>;

pub(super) fn tls_config(
    section: TlsSection,
    base: &Path,
    ignored: &mut Vec<&'static str>,
) -> Result<rustls::ServerConfig, TlsError> {
    let auth_type = section
        .client_auth_type
        .as_deref()
        .unwrap_or("NoClientCert");
    if !matches!(
        auth_type,
        "NoClientCert" | "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven"
    ) {
        return Err(TlsError::Unsupported(format!(
            "client_auth_type {auth_type:?} is not supported: use NoClientCert, RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        )));
    }
    if section.client_allowed_sans.is_some() {
        return Err(TlsError::Unsupported(
            "client_allowed_sans is not supported; restrict clients with client_ca_file".into(),
        ));
    }
    // Both from files: re-read when they change, as exporter-toolkit does at each handshake.
    let cert_files = section
        .cert_file
        .as_ref()
        .zip(section.key_file.as_ref())
        .map(|(cert, key)| (base.join(cert), base.join(key)));
    let cert = read_pem(section.cert, section.cert_file, base, "cert")?.ok_or_else(|| {
        TlsError::Unsupported("tls_server_config needs cert_file (or cert)".into())
    })?;
    let key = read_pem(section.key, section.key_file, base, "key")?
        .ok_or_else(|| TlsError::Unsupported("tls_server_config needs key_file (or key)".into()))?;
    let client_ca = read_pem(section.client_ca, section.client_ca_file, base, "client_ca")?;
    let server_cert = ServerCert::new(&cert, &key, cert_files)?;

    let versions = protocol_versions(
        section.min_version.as_deref(),
        section.max_version.as_deref(),
    )?;
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&versions);
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        _ => {
            let ca = client_ca.ok_or_else(|| {
                TlsError::Unsupported(format!("client_auth_type {auth_type} needs client_ca_file"))
            })?;
            let optional = auth_type == "VerifyClientCertIfGiven";
            builder.with_client_cert_verifier(client_verifier(&ca, optional)?)
        }
    };
    for (present, name) in [
        (
            section.cipher_suites.is_some(),
            "tls_server_config.cipher_suites",
        ),
        (
            section.prefer_server_cipher_suites.is_some(),
            "tls_server_config.prefer_server_cipher_suites",
        ),
        (
            section.curve_preferences.is_some(),
            "tls_server_config.curve_preferences",
        ),
    ] {
        if present {
            ignored.push(name);
        }
    }
    let mut config = builder.with_cert_resolver(Arc::new(server_cert));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The server's certificate and key. When they come from files, a handshake that finds either
/// file changed on disk (modification time or size) reads the pair again, so a renewed
/// certificate is served without a reload; a pair that does not load (half written, say) leaves
/// the one in force and is tried again at the next handshake.
#[derive(Debug)]
struct ServerCert {
    files: Option<(PathBuf, PathBuf)>,
    current: Mutex<(Option<Stamps>, Arc<rustls::sign::CertifiedKey>)>,
}

type Stamps = [(Option<std::time::SystemTime>, u64); 2];

impl ServerCert {
    fn new(
        cert: &[u8],
        key: &[u8],
        files: Option<(PathBuf, PathBuf)>,
    ) -> Result<ServerCert, TlsError> {
        let stamps = files.as_ref().map(|(cert, key)| stamps(cert, key));
        Ok(ServerCert {
            current: Mutex::new((stamps, Arc::new(signing_pair(cert, key)?))),
            files,
        })
    }

    /// Reads the files again if they changed since the pair in force was read.
    fn refreshed(&self) -> Arc<rustls::sign::CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cert_path, key_path)) = &self.files {
            let now = stamps(cert_path, key_path);
            if current.0 != Some(now) {
                let read =
                    std::fs::read(cert_path).and_then(|cert| Ok((cert, std::fs::read(key_path)?)));
                match read
                    .map_err(|e| e.to_string())
                    .and_then(|(cert, key)| signing_pair(&cert, &key).map_err(|e| e.to_string()))
                {
                    Ok(pair) => {
                        tracing::info!("TLS certificate read again from {}", cert_path.display());
                        *current = (Some(now), Arc::new(pair));
                    }
                    Err(error) => tracing::warn!(
                        "TLS certificate changed on disk but does not load, serving the previous one: {error}"
                    ),
                }
            }
        }
        Arc::clone(&current.1)
    }
}

impl rustls::server::ResolvesServerCert for ServerCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.refreshed())
    }
}

fn stamps(cert: &Path, key: &Path) -> Stamps {
    [cert, key]
        .map(|path| std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len())))
}

/// A certificate chain and the key that signs for it, checked to belong together.
fn signing_pair(cert: &[u8], key: &[u8]) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let (chain, key) = certified_key(cert, key)?;
    rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|cause| TlsError::Rustls {
            what: "cert and key",
            cause,
        })
}

/// The server's certificate chain (at least one certificate) and its private key, from PEM.
fn certified_key(
    cert: &[u8],
    key: &[u8],
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    TlsError,
> {
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsError::Pem {
            what: "cert",
            cause,
        })?;
    if chain.is_empty() {
        return Err(TlsError::Unsupported(
            "cert: no certificate in the PEM data".into(),
        ));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
        .map_err(|cause| TlsError::Pem { what: "key", cause })?;
    Ok((chain, key))
}

/// PEM data given inline or as a file (relative to `base`), or `None` when neither is given.
fn read_pem(
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    what: &str,
) -> Result<Option<Vec<u8>>, TlsError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(TlsError::Unsupported(format!(
            "give {what} inline or as {what}_file, not both"
        ))),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(file)) => {
            let path = base.join(file);
            std::fs::read(&path)
                .map(Some)
                .map_err(|cause| TlsError::Read { path, cause })
        }
        (None, None) => Ok(None),
    }
}

/// TLS 1.2 and 1.3, narrowed by `min_version` and `max_version`.
fn protocol_versions(min: Option<&str>, max: Option<&str>) -> Result<Versions, TlsError> {
    let version = |name: &str| match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        other => Err(TlsError::Unsupported(format!(
            "TLS version {other:?} is not supported (TLS12 or TLS13)"
        ))),
    };
    let min = min.map(version).transpose()?;
    let max = max.map(version).transpose()?;
    let versions: Versions = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| {
            min.is_none_or(|min| !(min == &rustls::version::TLS13 && *v == &rustls::version::TLS12))
        })
        .filter(|v| {
            max.is_none_or(|max| !(max == &rustls::version::TLS12 && *v == &rustls::version::TLS13))
        })
        .collect();
    if versions.is_empty() {
        return Err(TlsError::Unsupported(
            "min_version is above max_version".into(),
        ));
    }
    Ok(versions)
}

/// Verifies client certificates against the CAs in `ca`; `optional` lets clients without one in.
fn client_verifier(
    ca: &[u8],
    optional: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|cause| TlsError::Pem {
            what: "client_ca",
            cause,
        })?;
        roots.add(cert).map_err(|cause| TlsError::Rustls {
            what: "client_ca",
            cause,
        })?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots));
    let verifier = if optional {
        verifier.allow_unauthenticated()
    } else {
        verifier
    };
    verifier
        .build()
        .map_err(|cause| TlsError::ClientVerifier { cause })
}
