//! Credentials and request signing: OAuth 1.0a user context (HMAC-SHA1) and OAuth 2 bearer.
//!
//! The OAuth 1.0a signature follows X's "Creating a signature" guide (protocol.md §7):
//! the signed parameters are every query parameter, every `oauth_*` header parameter except
//! `oauth_signature` and `realm`, and the body parameters **only** when the body is
//! `application/x-www-form-urlencoded`. Multipart and JSON bodies are never signed.
//!
//! The same functions serve the client (to sign) and the emulator (to verify), so the two
//! cannot drift apart; the unit tests pin them to X's published worked example.
//!
//! Secrets never appear in `Debug` output, logs or errors: [`Credentials`] redacts them.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use std::fmt;

/// Characters OAuth 1.0a percent-encodes: everything but the RFC 3986 unreserved set
/// (`A-Z a-z 0-9 - . _ ~`).
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Environment variable holding the OAuth 1.0a consumer (API) key.
pub const ENV_API_KEY: &str = "X_API_KEY";
/// Environment variable holding the OAuth 1.0a consumer (API) secret.
pub const ENV_API_SECRET: &str = "X_API_SECRET";
/// Environment variable holding the OAuth 1.0a access token.
pub const ENV_ACCESS_TOKEN: &str = "X_ACCESS_TOKEN";
/// Environment variable holding the OAuth 1.0a access token secret.
pub const ENV_ACCESS_TOKEN_SECRET: &str = "X_ACCESS_TOKEN_SECRET";
/// Environment variable holding an OAuth 2 bearer token.
pub const ENV_BEARER_TOKEN: &str = "X_BEARER_TOKEN";

/// OAuth 1.0a user-context credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth1Credentials {
    /// Consumer (API) key. Not secret, but still kept out of logs.
    pub consumer_key: String,
    /// Consumer (API) secret.
    pub consumer_secret: String,
    /// Access token.
    pub token: String,
    /// Access token secret.
    pub token_secret: String,
}

impl fmt::Debug for OAuth1Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth1Credentials")
            .field("consumer_key", &"<redacted>")
            .field("consumer_secret", &"<redacted>")
            .field("token", &"<redacted>")
            .field("token_secret", &"<redacted>")
            .finish()
    }
}

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// OAuth 1.0a user context, HMAC-SHA1 signed. Works with v1.1 and v2.
    OAuth1(OAuth1Credentials),
    /// An OAuth 2 bearer token (user context with `media.write` scope). v2 only.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::OAuth1(c) => c.fmt(f),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// OAuth 1.0a credentials from the four parts.
    pub fn oauth1(
        consumer_key: impl Into<String>,
        consumer_secret: impl Into<String>,
        token: impl Into<String>,
        token_secret: impl Into<String>,
    ) -> Self {
        Credentials::OAuth1(OAuth1Credentials {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            token: token.into(),
            token_secret: token_secret.into(),
        })
    }

    /// A bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Credentials::Bearer(token.into())
    }

    /// Reads credentials from `X_API_KEY`, `X_API_SECRET`, `X_ACCESS_TOKEN`,
    /// `X_ACCESS_TOKEN_SECRET` (all four for OAuth 1.0a, preferred) or `X_BEARER_TOKEN`.
    /// Returns `None` when neither set is complete.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`Credentials::from_env`], reading variables through `get` (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        if let (Some(ck), Some(cs), Some(t), Some(ts)) = (
            get(ENV_API_KEY),
            get(ENV_API_SECRET),
            get(ENV_ACCESS_TOKEN),
            get(ENV_ACCESS_TOKEN_SECRET),
        ) {
            return Some(Credentials::oauth1(ck, cs, t, ts));
        }
        get(ENV_BEARER_TOKEN).map(Credentials::Bearer)
    }

    /// The `Authorization` header value for a request.
    ///
    /// `url` is the full request URL (its query parameters are signed); `form_params` are the
    /// body parameters of an `application/x-www-form-urlencoded` body and must be empty for
    /// multipart, JSON or empty bodies.
    pub fn authorization(
        &self,
        method: &str,
        url: &url::Url,
        form_params: &[(String, String)],
    ) -> String {
        match self {
            Credentials::Bearer(t) => format!("Bearer {t}"),
            Credentials::OAuth1(c) => {
                let nonce = random_nonce();
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                oauth1_authorization(c, method, url, form_params, &nonce, timestamp)
            }
        }
    }
}

/// Percent-encodes `s` as OAuth 1.0a requires (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// The base URL of a request for signing: scheme, host, non-default port and path; no query,
/// no fragment.
pub fn base_url(url: &url::Url) -> String {
    let mut s = format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or_default().to_ascii_lowercase()
    );
    if let Some(port) = url.port() {
        s.push_str(&format!(":{port}"));
    }
    s.push_str(url.path());
    s
}

/// The signature base string: `METHOD&enc(base_url)&enc(sorted, encoded params)`.
pub fn signature_base_string(method: &str, base_url: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let joined = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(base_url),
        percent_encode(&joined)
    )
}

/// `base64(HMAC-SHA1(enc(consumer_secret)&enc(token_secret), base_string))`.
pub fn hmac_sha1_signature(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here; fall back to an
    // empty signature rather than panic if that ever changed.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `oauth_*` protocol parameters (without the signature) for a request.
fn oauth_params(c: &OAuth1Credentials, nonce: &str, timestamp: u64) -> Vec<(String, String)> {
    vec![
        ("oauth_consumer_key".into(), c.consumer_key.clone()),
        ("oauth_nonce".into(), nonce.to_string()),
        ("oauth_signature_method".into(), "HMAC-SHA1".into()),
        ("oauth_timestamp".into(), timestamp.to_string()),
        ("oauth_token".into(), c.token.clone()),
        ("oauth_version".into(), "1.0".into()),
    ]
}

/// Computes the OAuth 1.0a signature of a request with a given nonce and timestamp.
pub fn oauth1_signature(
    c: &OAuth1Credentials,
    method: &str,
    url: &url::Url,
    form_params: &[(String, String)],
    nonce: &str,
    timestamp: u64,
) -> String {
    let mut params = oauth_params(c, nonce, timestamp);
    params.extend(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    params.extend(form_params.iter().cloned());
    let base = signature_base_string(method, &base_url(url), &params);
    hmac_sha1_signature(&base, &c.consumer_secret, &c.token_secret)
}

/// The full `Authorization: OAuth ...` header value with a given nonce and timestamp.
pub fn oauth1_authorization(
    c: &OAuth1Credentials,
    method: &str,
    url: &url::Url,
    form_params: &[(String, String)],
    nonce: &str,
    timestamp: u64,
) -> String {
    let signature = oauth1_signature(c, method, url, form_params, nonce, timestamp);
    let mut header_params = oauth_params(c, nonce, timestamp);
    header_params.push(("oauth_signature".into(), signature));
    header_params.sort();
    let fields = header_params
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("OAuth {fields}")
}

/// Parses an `Authorization: OAuth k="v", ...` header into decoded pairs.
/// Returns `None` if the header is not an OAuth header or is malformed.
pub fn parse_oauth_header(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("OAuth ")?;
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
        let k = percent_encoding::percent_decode_str(k.trim())
            .decode_utf8()
            .ok()?
            .into_owned();
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .ok()?
            .into_owned();
        out.push((k, v));
    }
    Some(out)
}

/// Verifies an OAuth 1.0a `Authorization` header against the expected credentials.
///
/// `form_params` are the urlencoded body parameters (empty for other bodies). Every
/// `oauth_*` parameter except `oauth_signature` and `realm` is signed, including
/// `oauth_body_hash` when a client (twurl) sends it.
pub fn verify_oauth1(
    expected: &OAuth1Credentials,
    method: &str,
    url: &url::Url,
    form_params: &[(String, String)],
    header: &str,
) -> bool {
    let Some(pairs) = parse_oauth_header(header) else {
        return false;
    };
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("oauth_consumer_key") != Some(expected.consumer_key.as_str())
        || get("oauth_token") != Some(expected.token.as_str())
        || get("oauth_signature_method") != Some("HMAC-SHA1")
    {
        return false;
    }
    let Some(sent) = get("oauth_signature") else {
        return false;
    };
    let mut params: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with("oauth_") && k != "oauth_signature")
        .cloned()
        .collect();
    params.extend(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    params.extend(form_params.iter().cloned());
    let base = signature_base_string(method, &base_url(url), &params);
    let want = hmac_sha1_signature(&base, &expected.consumer_secret, &expected.token_secret);
    constant_time_eq(want.as_bytes(), sent.as_bytes())
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random alphanumeric characters.
fn random_nonce() -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of X's "Creating a signature" page
    /// (developer.x.com/en/docs/authentication/oauth-1-0a/creating-a-signature):
    /// its published inputs and its published signature `hCtSmYh+iHYCEqBWrE7C7hYmtUk=`.
    fn x_example() -> (OAuth1Credentials, url::Url, Vec<(String, String)>) {
        let c = OAuth1Credentials {
            consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
            consumer_secret: "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw".into(),
            token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
            token_secret: "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE".into(),
        };
        let url = url::Url::parse(
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
        )
        .unwrap();
        let body = vec![(
            "status".to_string(),
            "Hello Ladies + Gentlemen, a signed OAuth request!".to_string(),
        )];
        (c, url, body)
    }

    const X_NONCE: &str = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
    const X_TIMESTAMP: u64 = 1318622958;

    #[test]
    fn signature_matches_x_worked_example() {
        let (c, url, body) = x_example();
        let sig = oauth1_signature(&c, "POST", &url, &body, X_NONCE, X_TIMESTAMP);
        assert_eq!(sig, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
    }

    #[test]
    fn base_string_matches_x_worked_example() {
        let (c, url, body) = x_example();
        let mut params = oauth_params(&c, X_NONCE, X_TIMESTAMP);
        params.extend(
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
        params.extend(body);
        let base = signature_base_string("post", &base_url(&url), &params);
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
    }

    #[test]
    fn header_round_trips_through_verifier() {
        let (c, url, body) = x_example();
        let header = oauth1_authorization(&c, "POST", &url, &body, X_NONCE, X_TIMESTAMP);
        assert!(
            header.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""),
            "{header}"
        );
        assert!(verify_oauth1(&c, "POST", &url, &body, &header));
        // A different body, a different secret or a different URL fail.
        assert!(!verify_oauth1(&c, "POST", &url, &[], &header));
        let mut wrong = c.clone();
        wrong.token_secret.push('x');
        assert!(!verify_oauth1(&wrong, "POST", &url, &body, &header));
        let other = url::Url::parse("https://api.twitter.com/1.1/statuses/update.json").unwrap();
        assert!(!verify_oauth1(&c, "POST", &other, &body, &header));
    }

    #[test]
    fn non_default_port_is_part_of_the_base_url() {
        let url =
            url::Url::parse("http://127.0.0.1:8080/1.1/media/upload.json?command=STATUS").unwrap();
        assert_eq!(
            base_url(&url),
            "http://127.0.0.1:8080/1.1/media/upload.json"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let (c, _, _) = x_example();
        let s = format!("{:?}", Credentials::OAuth1(c.clone()));
        assert!(
            !s.contains(&c.consumer_secret)
                && !s.contains(&c.token_secret)
                && !s.contains(&c.token)
        );
        let b = format!("{:?}", Credentials::bearer("AAAAsecret"));
        assert!(!b.contains("AAAAsecret"));
    }

    #[test]
    fn from_lookup_prefers_oauth1_and_falls_back_to_bearer() {
        let env = |k: &str| match k {
            ENV_BEARER_TOKEN => Some("tok".to_string()),
            _ => None,
        };
        assert_eq!(
            Credentials::from_lookup(env),
            Some(Credentials::bearer("tok"))
        );
        assert_eq!(Credentials::from_lookup(|_| None), None);
        let all = |k: &str| Some(format!("v-{k}"));
        assert!(matches!(
            Credentials::from_lookup(all),
            Some(Credentials::OAuth1(_))
        ));
    }
}
