//! Prometheus HTTP API instant queries (`GET /api/v1/query`): one number from a scalar or a one-series vector.

use std::time::Duration;

use simian_config::steady::{defaults, PrometheusProbeConfig};

use crate::ProbeError;

/// A query ready to send.
#[derive(Debug)]
pub(crate) struct Query {
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
}

impl Query {
    pub(crate) fn new(name: &str, cfg: &PrometheusProbeConfig) -> Result<Query, ProbeError> {
        let bad = |why: String| ProbeError::Setup { probe: name.to_string(), why };
        let base = cfg.url.trim_end_matches('/');
        let mut url =
            reqwest::Url::parse(&format!("{base}/api/v1/query")).map_err(|e| bad(format!("bad url: {e}")))?;
        url.query_pairs_mut().append_pair("query", &cfg.query);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| bad(format!("cannot build an HTTP client: {e}")))?;
        Ok(Query { client, url, timeout: cfg.timeout.map_or(defaults::QUERY_TIMEOUT, |d| d.std()) })
    }

    /// The query's value now.
    pub(crate) async fn value(&self) -> Result<f64, String> {
        let exchange = async {
            let resp = self.client.get(self.url.clone()).send().await.map_err(describe)?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(describe)?;
            parse(status.as_u16(), &body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}", simian_config::Duration(self.timeout))))
    }
}

/// An HTTP error without the URL.
fn describe(e: reqwest::Error) -> String {
    if e.is_connect() {
        "cannot connect to Prometheus".into()
    } else if e.is_timeout() {
        "Prometheus timed out".into()
    } else {
        format!("request to Prometheus failed: {}", e.without_url())
    }
}

/// The number in an instant-query answer.
pub(crate) fn parse(status: u16, body: &[u8]) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| format!("Prometheus answered {status} with no JSON"))?;
    if v["status"] != "success" {
        let err = v["error"].as_str().unwrap_or("unknown error");
        return Err(format!("query failed ({status}): {}", err.chars().take(200).collect::<String>()));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => return Err("the query returned no series".into()),
            Some(many) => {
                return Err(format!(
                    "the query returned {} series; aggregate it to one (e.g. sum(...))",
                    many.len()
                ))
            }
            None => return Err("malformed vector result".into()),
        },
        other => {
            return Err(format!(
                "the query gave a {} result; it must give one number",
                other.unwrap_or("missing")
            ))
        }
    };
    let text = sample[1].as_str().ok_or("malformed sample")?;
    let n: f64 = text.parse().map_err(|_| format!("sample `{text}` is not a number"))?;
    if n.is_finite() {
        Ok(n)
    } else {
        Err(format!("the query's value is {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_scalars_and_single_series() {
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"12.5"]}]}}"#;
        assert_eq!(parse(200, v), Ok(12.5));
        let s = br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"3"]}}"#;
        assert_eq!(parse(200, s), Ok(3.0));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse(200, empty).unwrap_err().contains("no series"));
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(parse(200, two).unwrap_err().contains("2 series"));
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(parse(400, bad).unwrap_err().contains("parse error"));
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(parse(200, nan).is_err());
        assert!(parse(502, b"<html>").is_err());
    }
}
