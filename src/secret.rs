//! Keeps passwords out of what the exporter shows: a `Secret` that no `Debug` prints, and the
//! one function that masks the password of a Redis URL wherever a URL is shown.

use std::fmt;

/// What replaces a password in a URL.
const MASK: &str = "***";

/// A password, kept out of `Debug` output so that it cannot reach a log or a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(password: impl Into<String>) -> Secret {
        Secret(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `url` with its password replaced by `***` (`redis://:***@host:6379/0`), the user kept. Works
/// on text that does not parse as a URL too, as an operator's typo must be shown safely: the
/// user part runs to the last `@`, so an unescaped `@`, `/` or `#` in the password is masked
/// with it, and `pass=`/`password=` query values (the crate's Unix-socket form) are masked.
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let mut shown = match url[start..].rfind('@').map(|i| start + i) {
        Some(at) => match url[start..at].find(':') {
            Some(colon) => format!("{}{MASK}{}", &url[..=start + colon], &url[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some(query) = shown.find('?') {
        let masked: Vec<String> = shown[query + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if matches!(key, "pass" | "password") => format!("{key}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{}?{}", &shown[..query], masked.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_users_and_addresses_kept() {
        for (url, shown) in [
            ("redis://:s3cr3t@host:6379/0", "redis://:***@host:6379/0"),
            (
                "rediss://app:s3cr3t@[::1]:6380/2",
                "rediss://app:***@[::1]:6380/2",
            ),
            ("redis://app@host:6379", "redis://app@host:6379"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("redis://:p@ss/w#rd@host:port", "redis://:***@host:port"),
            ("user:s3cr3t@host:6379", "user:***@host:6379"),
            ("host:6379", "host:6379"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cr3t",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(format!("{:?}", Secret::new("s3cr3t")), "Secret(..)");
    }
}
