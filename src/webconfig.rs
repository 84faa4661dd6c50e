//! The web configuration file (`--web.config.file`) in the format the Prometheus exporters share,
//! so the file an operator already has for node_exporter works here: TLS for the listener and
//! basic-auth users with bcrypt hashes. Read and checked once at start-up; `server` applies it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use tokio_rustls::rustls;

mod tls;

pub use tls::TlsError;
use tls::{TlsSection, tls_config};

/// Each error's message ends with its cause's, so the cause is kept in a field but not returned
/// as `source()`: a report that prints the chain would otherwise repeat it.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {cause}")]
    Syntax {
        path: PathBuf,
        cause: serde_yaml_ng::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {cause}")]
    Tls { path: PathBuf, cause: TlsError },
    #[error("{path}: http_server_config.headers: {cause}")]
    Header { path: PathBuf, cause: HeaderError },
}

/// Why a header in `http_server_config.headers` cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("HTTP header {0:?} can not be configured (allowed: {allowed})", allowed = ALLOWED_HEADERS.map(|(name, _)| name).join(", "))]
    NotAllowed(String),
    #[error("invalid value for {name}: expected one of {allowed:?}, got {value:?}")]
    Value {
        name: &'static str,
        allowed: &'static [&'static str],
        value: String,
    },
    #[error("invalid value for {name}: {value:?} is not a valid header value")]
    Unsendable { name: &'static str, value: String },
}

/// The headers the shared format lets a file set, with the only values allowed where the header
/// is an enumeration (an empty list: any value). As in exporter-toolkit, which keeps the list
/// closed so that a file cannot change what a response means (its Content-Type, say) and stays
/// valid for every exporter that reads the format.
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// What the file asks for.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<BasicAuth>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Settings of the shared format that this exporter accepts but does not apply.
    pub ignored: Vec<&'static str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsSection>,
    http_server_config: Option<HttpSection>,
    #[serde(default)]
    basic_auth_users: HashMap<String, String>,
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    http2: Option<bool>,
    #[serde(default)]
    headers: HashMap<String, String>,
}

/// Reads and checks the file. Relative paths in it are relative to the file's directory.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| WebConfigError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|cause| WebConfigError::Syntax {
            path: path.to_owned(),
            cause,
        })?
    };
    let invalid = |message: String| WebConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut ignored = Vec::new();
    if file.rate_limit.is_some() {
        ignored.push("rate_limit");
    }
    let tls = match file.tls_server_config {
        Some(section) => Some(Arc::new(tls_config(section, base, &mut ignored).map_err(
            |cause| WebConfigError::Tls {
                path: path.to_owned(),
                cause,
            },
        )?)),
        None => None,
    };
    let mut headers = Vec::new();
    if let Some(http) = file.http_server_config {
        if http.http2 == Some(true) && tls.is_some() {
            ignored.push("http_server_config.http2 (HTTP/1.1 is served)");
        }
        for (name, value) in http.headers {
            headers.push(allowed_header(&name, &value).map_err(|cause| {
                WebConfigError::Header {
                    path: path.to_owned(),
                    cause,
                }
            })?);
        }
    }
    let auth = if file.basic_auth_users.is_empty() {
        None
    } else {
        for (user, hash) in &file.basic_auth_users {
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                invalid(format!("basic_auth_users.{user}: not a bcrypt hash ({e})"))
            })?;
        }
        Some(BasicAuth::new(file.basic_auth_users))
    };
    Ok(WebConfig {
        tls,
        auth,
        headers,
        ignored,
    })
}

/// One of [`ALLOWED_HEADERS`] with an allowed value. Names are matched without regard to case,
/// as HTTP compares them; enumerated values exactly, as exporter-toolkit does.
fn allowed_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    let (name, allowed) = ALLOWED_HEADERS
        .into_iter()
        .find(|(allowed, _)| allowed.eq_ignore_ascii_case(name))
        .ok_or_else(|| HeaderError::NotAllowed(name.to_owned()))?;
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(HeaderError::Value {
            name,
            allowed,
            value: value.to_owned(),
        });
    }
    let header_value = HeaderValue::try_from(value).map_err(|_| HeaderError::Unsendable {
        name,
        value: value.to_owned(),
    })?;
    let name = HeaderName::from_bytes(name.as_bytes()).expect("the allowed names are valid");
    Ok((name, header_value))
}

/// Basic-auth users and their bcrypt hashes. A bcrypt check costs tens of milliseconds of CPU
/// by design, so credentials that passed are remembered (as the shared format's other servers do).
pub struct BasicAuth {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<String, ()>>,
}

/// Remembered credentials at most; the cache is emptied when full rather than grown.
const VERIFIED_CAPACITY: usize = 64;
/// Compared against for unknown users, so that a missing user takes as long as a wrong password.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

impl BasicAuth {
    fn new(users: HashMap<String, String>) -> BasicAuth {
        BasicAuth {
            users,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the request's `Authorization` header was already verified.
    pub fn remembered(&self, authorization: Option<&HeaderValue>) -> bool {
        authorization
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| self.verified.lock().expect("not poisoned").contains_key(v))
    }

    /// Checks the `Authorization` header with bcrypt. CPU-heavy: run it off the async threads.
    pub fn verify(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(header) = authorization.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((user, password)) = decode_basic(header) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && known;
        if ok {
            let mut verified = self.verified.lock().expect("not poisoned");
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(header.to_owned(), ());
        }
        ok
    }
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("harvest-webconfig-{tag}-{}", std::process::id()))
    }

    #[test]
    fn basic_auth_header_decoding() {
        assert_eq!(
            decode_basic("Basic YWxpY2U6czNjcjN0"),
            Some(("alice".into(), "s3cr3t".into()))
        );
        assert_eq!(
            decode_basic("basic YWxpY2U6YTpi"),
            Some(("alice".into(), "a:b".into()))
        );
        assert_eq!(decode_basic("Bearer abc"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
        assert_eq!(decode_basic("Basic YWxpY2U="), None, "no colon");
    }

    #[test]
    fn users_are_verified_and_remembered() {
        let hash = bcrypt::hash("s3cr3t", 4).unwrap();
        let auth = BasicAuth::new(HashMap::from([("alice".to_owned(), hash)]));
        let right = HeaderValue::from_static("Basic YWxpY2U6czNjcjN0");
        let wrong = HeaderValue::from_static("Basic YWxpY2U6bm9wZQ==");
        let stranger = HeaderValue::from_static("Basic Ym9iOnMzY3IzdA==");
        assert!(!auth.remembered(Some(&right)));
        assert!(auth.verify(Some(&right)));
        assert!(auth.remembered(Some(&right)));
        assert!(!auth.verify(Some(&wrong)));
        assert!(!auth.remembered(Some(&wrong)));
        assert!(
            !auth.verify(Some(&stranger)),
            "an unknown user with a known password"
        );
        assert!(!auth.verify(None));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_the_file_name() {
        let dir = temp_dir("bad");
        for (text, expected) in [
            ("basic_auth_user:\n  a: b\n", "unknown field"),
            (
                "basic_auth_users:\n  alice: plain-text\n",
                "not a bcrypt hash",
            ),
            ("tls_server_config:\n  key_file: k.pem\n", "needs cert_file"),
            (
                "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
                "cannot read",
            ),
            (
                "http_server_config:\n  headers:\n    \"Bad Name\": x\n",
                "HTTP header \"Bad Name\" can not be configured",
            ),
            (
                "http_server_config:\n  headers:\n    Content-Type: text/html\n",
                "HTTP header \"Content-Type\" can not be configured",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow-from x\n",
                "invalid value for X-Frame-Options",
            ),
            (
                "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
                "invalid value for X-Content-Type-Options",
            ),
            (
                "http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\nb\"\n",
                "not a valid header value",
            ),
        ] {
            let path = write(&dir, "web.yml", text);
            let error = load(&path).err().expect(text);
            // The whole message is in the error itself, so a printed chain says it once.
            assert!(std::error::Error::source(&error).is_none(), "{text}");
            let error = error.to_string();
            assert!(
                error.contains(expected) && error.contains("web.yml"),
                "{text}: {error}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_empty_file_asks_for_nothing() {
        let dir = temp_dir("empty");
        let config = load(&write(&dir, "web.yml", "")).unwrap();
        assert!(config.tls.is_none() && config.auth.is_none() && config.headers.is_empty());
        let config = load(&write(
            &dir,
            "web.yml",
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\nrate_limit:\n  burst: 5\n",
        ))
        .unwrap();
        assert_eq!(config.headers.len(), 1);
        assert_eq!(config.ignored, ["rate_limit"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_allowed_headers_with_their_values() {
        let allowed = [
            ("Strict-Transport-Security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
            ("X-Frame-Options", "deny"),
            ("X-Frame-Options", "sameorigin"),
            ("X-XSS-Protection", "1; mode=block"),
            ("Content-Security-Policy", "default-src 'self'"),
        ];
        for (name, value) in allowed {
            let (header, header_value) = allowed_header(name, value).expect(name);
            assert_eq!(header.as_str(), name.to_ascii_lowercase());
            assert_eq!(header_value, value);
        }
        for (name, value) in [
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", ""),
            ("Server", "x"),
            ("Cache-Control", "no-cache"),
            ("Set-Cookie", "a=b"),
        ] {
            assert!(allowed_header(name, value).is_err(), "{name}: {value}");
        }
    }

    #[test]
    fn dummy_hash_is_a_valid_bcrypt_hash() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }
}
