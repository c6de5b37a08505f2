//! Who may use the control room: a pure decision from the request's method, where the daemon listens, the
//! policy's token and the `Authorization` header. Writes always need the token; off loopback, reads too.
//! The token is compared in constant time, and it is never echoed.

use hyper::StatusCode;
use subtle::ConstantTimeEq;

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Go ahead.
    Allowed,
    /// Refused: the status and the reason (for the JSON error; never the token).
    Denied(StatusCode, &'static str),
}

/// Decide: `write` (a POST), `loopback` (the daemon listens on loopback only), the policy's `token`, and the
/// request's `Authorization` header.
pub fn decide(write: bool, loopback: bool, token: Option<&str>, authorization: Option<&str>) -> Access {
    if !write && loopback {
        return Access::Allowed;
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Access::Denied(
            StatusCode::FORBIDDEN,
            if write {
                "no API token is configured: set `api: { token: ${SIMIAN_API_TOKEN} }` in the policy to act from \
                 the control room"
            } else {
                "this daemon listens beyond loopback and has no API token: set `api: { token: \
                 ${SIMIAN_API_TOKEN} }` in the policy"
            },
        );
    };
    let Some(presented) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Access::Denied(
            StatusCode::UNAUTHORIZED,
            "send the API token as `Authorization: Bearer <token>`",
        );
    };
    if bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes())) {
        Access::Allowed
    } else {
        Access::Denied(StatusCode::UNAUTHORIZED, "the API token is wrong")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef0123";

    #[test]
    fn reads_on_loopback_are_open_and_everything_else_needs_the_token() {
        let bearer = format!("Bearer {T}");
        assert_eq!(decide(false, true, None, None), Access::Allowed);
        assert_eq!(decide(false, true, Some(T), None), Access::Allowed);
        for (write, loopback) in [(true, true), (true, false), (false, false)] {
            let no_token = decide(write, loopback, None, Some(&bearer));
            assert!(matches!(no_token, Access::Denied(StatusCode::FORBIDDEN, _)), "{write} {loopback}");
            assert_eq!(decide(write, loopback, Some(T), Some(&bearer)), Access::Allowed);
            for bad in [None, Some(T), Some("Bearer "), Some("Bearer 0123456789abcdef012"), Some("Basic x")] {
                let d = decide(write, loopback, Some(T), bad);
                assert!(matches!(d, Access::Denied(StatusCode::UNAUTHORIZED, _)), "{bad:?}: {d:?}");
            }
        }
    }

    #[test]
    fn a_refusal_never_contains_the_token() {
        for auth in [None, Some("Bearer nope")] {
            if let Access::Denied(_, why) = decide(true, true, Some(T), auth) {
                assert!(!why.contains(T));
            }
        }
    }
}
