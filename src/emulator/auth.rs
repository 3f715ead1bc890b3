//! Authentication of requests against the configured credentials (protocol.md §7).
//!
//! OAuth 1.0a is verified with [`crate::auth::verify_oauth1`] on the URL as the client signed
//! it: `http://` + the `Host` header + path + query, plus the urlencoded body parameters
//! only. Bearer tokens (v2 only) are compared in constant time. Nothing here logs or returns
//! a secret or the `Authorization` header.

use super::record::ApiVersion;
use crate::auth::{Credentials, constant_time_eq, verify_oauth1};
use http::{HeaderMap, Method, Uri, header};

/// First user id given to credentials whose token has no numeric user prefix.
///
/// Source: arbitrary; X access tokens start with the user id (`370773112-...`), which is
/// used when present.
const FIRST_SYNTHETIC_USER: u64 = 1000;

/// One accepted credential and the user it stands for.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    creds: Credentials,
    user: u64,
}

impl Account {
    /// Accounts for the configured credentials, in order.
    pub(crate) fn from_credentials(creds: Vec<Credentials>) -> Vec<Account> {
        creds
            .into_iter()
            .enumerate()
            .map(|(i, creds)| {
                let numeric = match &creds {
                    Credentials::OAuth1(c) => c
                        .token
                        .split_once('-')
                        .and_then(|(prefix, _)| prefix.parse::<u64>().ok()),
                    Credentials::Bearer(_) => None,
                };
                let user = numeric.unwrap_or(FIRST_SYNTHETIC_USER + i as u64);
                Account { creds, user }
            })
            .collect()
    }
}

/// The authenticated user, or `None` (→ 401).
pub(crate) fn authenticate(
    accounts: &[Account],
    api: ApiVersion,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    form_params: &[(String, String)],
) -> Option<u64> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        if api != ApiVersion::V2 {
            // v1.1 media upload is user context OAuth 1.0a only (protocol.md §7).
            return None;
        }
        return accounts.iter().find_map(|a| match &a.creds {
            Credentials::Bearer(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => {
                Some(a.user)
            }
            _ => None,
        });
    }
    if !value.starts_with("OAuth ") {
        return None;
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = url::Url::parse(&format!("http://{host}{path_and_query}")).ok()?;
    accounts.iter().find_map(|a| match &a.creds {
        Credentials::OAuth1(c) if verify_oauth1(c, method.as_str(), &url, form_params, value) => {
            Some(a.user)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn oauth1_and_bearer() {
        let oauth = Credentials::oauth1("ck", "cs", "42-tok", "ts");
        let accounts = Account::from_credentials(vec![oauth.clone(), Credentials::bearer("bt")]);
        let url =
            url::Url::parse("http://127.0.0.1:9/1.1/media/upload.json?command=STATUS&media_id=1")
                .unwrap();
        let uri: Uri = "/1.1/media/upload.json?command=STATUS&media_id=1"
            .parse()
            .unwrap();
        let h = headers(&oauth.authorization("GET", &url, &[]));
        assert_eq!(
            authenticate(&accounts, ApiVersion::V1, &Method::GET, &uri, &h, &[]),
            Some(42)
        );
        // Signed for GET, sent as POST: rejected. A changed query: rejected.
        assert_eq!(
            authenticate(&accounts, ApiVersion::V1, &Method::POST, &uri, &h, &[]),
            None
        );
        let other: Uri = "/1.1/media/upload.json?command=STATUS&media_id=2"
            .parse()
            .unwrap();
        assert_eq!(
            authenticate(&accounts, ApiVersion::V1, &Method::GET, &other, &h, &[]),
            None
        );
        // Bearer: v2 only, exact token.
        let b = headers("Bearer bt");
        assert_eq!(
            authenticate(&accounts, ApiVersion::V2, &Method::GET, &uri, &b, &[]),
            Some(1001)
        );
        assert_eq!(
            authenticate(&accounts, ApiVersion::V1, &Method::GET, &uri, &b, &[]),
            None
        );
        let wrong = headers("Bearer bu");
        assert_eq!(
            authenticate(&accounts, ApiVersion::V2, &Method::GET, &uri, &wrong, &[]),
            None
        );
        assert_eq!(
            authenticate(
                &accounts,
                ApiVersion::V2,
                &Method::GET,
                &uri,
                &HeaderMap::new(),
                &[]
            ),
            None
        );
    }
}
