//! The one HTTP delivery path for the Slack and webhook sinks; errors never carry the URL or a header value.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use simian_config::Secret;

/// Whole-request limit: a slow chat server must not hold the outbox up.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connect limit: a dead endpoint fails fast and goes to backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Plain (non-secret) header values shorter than this are not scrubbed from errors: they are event names and
/// delivery ids, and blanking them would garble ordinary words and numbers.
const SCRUB_PLAIN_MIN: usize = 6;

/// Why a POST was not delivered. The texts never hold the URL, a header value or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The endpoint answered, but not with 2xx.
    #[error("endpoint answered HTTP {code}")]
    Status {
        /// The status code.
        code: u16,
        /// `Retry-After` (seconds form) of a 429 or 503.
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer (refused, reset, DNS, TLS, timeout).
    #[error("endpoint not reached: {0}")]
    Transport(String),
    /// The client or the request could not be built (bad URL, bad header, TLS setup).
    #[error("request not sent: {0}")]
    Client(String),
}

/// A shared HTTP client for every sink (one connection pool).
#[derive(Debug, Clone)]
pub struct Poster {
    client: Client,
}

impl Poster {
    /// A client with a 10 s request timeout, a 3 s connect timeout and user agent `simian/<version>`.
    pub fn new() -> Result<Poster, DeliveryError> {
        let client = Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("simian/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the secret headers to wherever it points; a 3xx is reported instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeliveryError::Client(chain(&e.without_url())))?;
        Ok(Poster { client })
    }

    /// POSTs `body` as `application/json` to `url` with `headers` and `secret_headers`; any 2xx is delivered.
    pub async fn post_json(
        &self,
        url: &Secret,
        headers: &[(String, String)],
        secret_headers: &[(String, Secret)],
        body: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        let scrub = Scrubber::new(url, headers, secret_headers);
        let parsed = Url::parse(url.expose())
            .map_err(|e| DeliveryError::Client(scrub.clean(format!("invalid URL: {e}"))))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => {
                return Err(DeliveryError::Client(scrub.clean(format!("URL scheme {other} is not http(s)"))))
            }
        }
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            map.insert(header_name(name, &scrub)?, header_value(name, value, false, &scrub)?);
        }
        for (name, value) in secret_headers {
            map.insert(header_name(name, &scrub)?, header_value(name, value.expose(), true, &scrub)?);
        }
        let sent = self.client.post(parsed).headers(map).body(body).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Err(DeliveryError::Client(scrub.clean(chain(&e.without_url()))))
            }
            Err(e) => return Err(DeliveryError::Transport(scrub.clean(chain(&e.without_url())))),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                response.headers().get(RETRY_AFTER).and_then(retry_after_seconds)
            }
            _ => None,
        };
        Err(DeliveryError::Status { code: status.as_u16(), retry_after })
    }
}

/// `Retry-After: <seconds>`; the HTTP-date form is rare for webhooks and left to the caller's backoff.
fn retry_after_seconds(v: &HeaderValue) -> Option<Duration> {
    v.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn header_name(name: &str, scrub: &Scrubber) -> Result<HeaderName, DeliveryError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| DeliveryError::Client(scrub.clean(format!("invalid header name {name:?}"))))
}

/// The value is never echoed: only the header's name says which one is wrong.
fn header_value(
    name: &str,
    value: &str,
    secret: bool,
    scrub: &Scrubber,
) -> Result<HeaderValue, DeliveryError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| DeliveryError::Client(scrub.clean(format!("invalid value for header {name:?}"))))?;
    // Keeps it out of the client's own debug output.
    v.set_sensitive(secret);
    Ok(v)
}

use simian_monkeys::error::chain;

/// Blanks every known sensitive text out of an error string, whatever put it there.
struct Scrubber {
    needles: Vec<String>,
}

impl Scrubber {
    fn new(url: &Secret, headers: &[(String, String)], secret_headers: &[(String, Secret)]) -> Scrubber {
        let raw = url.expose();
        let mut needles = vec![raw.to_string()];
        if let Ok(u) = Url::parse(raw) {
            needles.push(u.as_str().to_string());
            // The URL without its scheme, and its path, query, credentials: tokens live there.
            if let Some((_, rest)) = u.as_str().split_once("://") {
                needles.push(rest.to_string());
            }
            if u.path() != "/" {
                needles.push(u.path().to_string());
            }
            needles.extend(u.query().map(str::to_string));
            needles.extend(u.password().map(str::to_string));
            if !u.username().is_empty() {
                needles.push(u.username().to_string());
            }
            if let Some(segments) = u.path_segments() {
                needles.extend(segments.filter(|s| s.len() >= SCRUB_PLAIN_MIN).map(str::to_string));
            }
        }
        needles.extend(secret_headers.iter().map(|(_, v)| v.expose().to_string()));
        needles.extend(headers.iter().filter(|(_, v)| v.len() >= SCRUB_PLAIN_MIN).map(|(_, v)| v.clone()));
        needles.retain(|n| !n.is_empty());
        // Longest first, so a whole URL goes as one piece before its parts are looked for.
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Scrubber { needles }
    }

    fn clean(&self, mut text: String) -> String {
        for n in &self.needles {
            if !text.contains(n.as_str()) {
                continue;
            }
            text = if n.len() >= SCRUB_PLAIN_MIN {
                text.replace(n.as_str(), "***")
            } else {
                replace_words(&text, n)
            };
        }
        text
    }
}

/// Replace `needle` only where it stands as a word of its own: a short user name like `req` must not turn
/// "request" into "***uest".
fn replace_words(text: &str, needle: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(needle) {
        let before = rest[..i].chars().next_back().or_else(|| out.chars().next_back());
        let after = rest[i + needle.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_word) || after.is_some_and(is_word) {
            out.push_str(needle);
        } else {
            out.push_str("***");
        }
        rest = &rest[i + needle.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::receiver::Receiver;

    #[test]
    fn a_short_user_name_is_blanked_as_a_word_never_inside_one() {
        let url = Secret::new("http://req:pw-0123456789@127.0.0.1:9/hooks/T0KEN-very-secret-4711");
        let scrub = Scrubber::new(&url, &[], &[]);
        let text = scrub.clean("request to req failed: requests refused (user req)".to_string());
        assert_eq!(text, "request to *** failed: requests refused (user ***)");
    }

    const TOKEN: &str = "T0KEN-very-secret-4711";

    fn assert_clean(e: &DeliveryError, url: &str) {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(url), "{text}");
            assert!(!text.contains(TOKEN), "{text}");
            assert!(!text.contains("hooks/"), "{text}");
        }
    }

    #[tokio::test]
    async fn refused_and_500_errors_carry_neither_url_nor_token() {
        let poster = Poster::new().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/hooks/{TOKEN}?t={TOKEN}");
        let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Transport(_)), "{e:?}");
        assert_clean(&e, &url);

        let r = Receiver::start();
        r.set_status(500);
        let url = r.url(&format!("/hooks/{TOKEN}"));
        let e = poster.post_json(&Secret::new(&url), &[], &[], b"{}".to_vec()).await.unwrap_err();
        assert_eq!(e, DeliveryError::Status { code: 500, retry_after: None });
        assert_clean(&e, &url);
    }

    #[tokio::test]
    async fn bad_urls_and_headers_are_client_errors_without_the_values() {
        let poster = Poster::new().unwrap();
        let url = format!("ftp://example.invalid/hooks/{TOKEN}");
        let e = poster.post_json(&Secret::new(&url), &[], &[], vec![]).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Client(_)), "{e:?}");
        assert_clean(&e, &url);

        let e =
            poster.post_json(&Secret::new(format!("not a url {TOKEN}")), &[], &[], vec![]).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Client(_)), "{e:?}");
        assert!(!e.to_string().contains(TOKEN));

        let url = format!("http://127.0.0.1:9/hooks/{TOKEN}");
        let bad = vec![("Authorization".to_string(), Secret::new(format!("Bearer {TOKEN}\n")))];
        let e = poster.post_json(&Secret::new(&url), &[], &bad, vec![]).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Client(_)), "{e:?}");
        assert!(e.to_string().contains("Authorization"), "{e}");
        assert_clean(&e, &url);
    }

    #[test]
    fn scrubber_removes_url_parts_and_secret_header_values() {
        let url = Secret::new(format!("https://user:pw-123456@hooks.example/services/{TOKEN}?sig=abcdef123"));
        let s = Scrubber::new(
            &url,
            &[("X".into(), "short".into())],
            &[("A".into(), Secret::new("s3cr3t-value"))],
        );
        let text = s.clean(format!(
            "failed {} and hooks.example/services/{TOKEN} and /services/{TOKEN} and sig=abcdef123 and \
             s3cr3t-value, short",
            url.expose()
        ));
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains("abcdef123"), "{text}");
        assert!(!text.contains("pw-123456"), "{text}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("short"), "{text}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        assert_eq!(retry_after_seconds(&HeaderValue::from_static("120")), Some(Duration::from_secs(120)));
        assert_eq!(retry_after_seconds(&HeaderValue::from_static(" 5 ")), Some(Duration::from_secs(5)));
        assert_eq!(retry_after_seconds(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }
}
