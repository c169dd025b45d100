//! Authentication of HTTP Basic credentials against the catalog snapshot.
//!
//! With auth disabled (the default, as in CnosDB) the user must exist and the password is not
//! checked. Checking passwords (salted argon2 hashes, privileges) is the tenants-and-users issue;
//! until it lands the server refuses to start with `auth = true` rather than pretend.

use base64::Engine as _;

use crate::catalog::Catalog;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing Authorization header (HTTP Basic credentials are required)")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("access denied for user {0:?}: unknown user or wrong password")]
    Denied(String),
}

/// A user who passed authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
}

/// Credentials from an `Authorization: Basic ...` header value.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

pub fn parse_basic(header: Option<&str>) -> Result<Credentials, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, rest) = value
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected \"Basic <base64>\""))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed("only the Basic scheme is supported"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthError::Malformed("credentials are not valid base64"))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| AuthError::Malformed("credentials are not UTF-8"))?;
    let (user, password) = text.split_once(':').ok_or(AuthError::Malformed(
        "credentials lack the ':' between user and password",
    ))?;
    Ok(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Authenticates a request's Authorization header against a catalog snapshot.
pub fn authenticate(header: Option<&str>, catalog: &Catalog) -> Result<Principal, AuthError> {
    let creds = parse_basic(header)?;
    if !catalog.users.contains_key(&creds.user) {
        return Err(AuthError::Denied(creds.user));
    }
    Ok(Principal { user: creds.user })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn parses_and_checks_the_user() {
        let c = Catalog::bootstrap(1);
        assert_eq!(
            authenticate(Some(&b64("root:")), &c).expect("ok").user,
            "root"
        );
        assert_eq!(
            authenticate(Some(&b64("root:any:thing")), &c)
                .expect("ok")
                .user,
            "root"
        );
        assert_eq!(authenticate(None, &c), Err(AuthError::Missing));
        assert!(matches!(
            authenticate(Some("Bearer x"), &c),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            authenticate(Some("Basic !!"), &c),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            authenticate(Some(&b64("root")), &c),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(
            authenticate(Some(&b64("bob:x")), &c),
            Err(AuthError::Denied("bob".into()))
        );
    }
}
