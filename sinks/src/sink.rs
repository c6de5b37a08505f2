//! The runtime sink: built once from its `SinkConfig`, with one `deliver`. The outbox only calls this;
//! adding a sink touches this file and the schema.

use std::path::PathBuf;

use simian_config::{LoadedPolicy, LogSink, PrometheusSink, Severity, SinkConfig, SlackSink, WebhookSink};

use crate::http::{DeliveryError, Poster};
use crate::message::Message;
use crate::{jsonl, log, slack, webhook};

/// One configured sink, ready to deliver.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Lines on stderr, written at once (never queued).
    Log(LogSink),
    /// The jsonl audit trail (path resolved against the policy's folder).
    Jsonl {
        /// The sink's name.
        name: String,
        /// Absolute file path.
        path: PathBuf,
        /// Findings below this are left out.
        min_severity: Severity,
    },
    /// Slack Block Kit through an incoming webhook.
    Slack(SlackSink),
    /// Signed JSON POST.
    Webhook(WebhookSink),
    /// Metrics: state, not events (published by the daemon's /metrics and the one-shot push).
    Prometheus(PrometheusSink),
}

/// Told each acknowledged part as it happens (the outbox records it, so a retry resumes after it).
pub type PartDone<'a> = &'a mut dyn FnMut(u32);

impl Sink {
    /// Build every sink of the policy; with none configured, one `log` sink at `info` (the default).
    pub fn all(policy: &LoadedPolicy) -> Vec<Sink> {
        if policy.policy.sinks.is_empty() {
            return vec![Sink::Log(LogSink { name: None, min_severity: Severity::Info })];
        }
        policy.policy.sinks.iter().map(|c| Sink::from_config(c, policy)).collect()
    }

    /// The runtime sink for one configuration.
    pub fn from_config(config: &SinkConfig, policy: &LoadedPolicy) -> Sink {
        match config {
            SinkConfig::Log(l) => Sink::Log(l.clone()),
            SinkConfig::Jsonl(j) => Sink::Jsonl {
                name: config.name().to_string(),
                path: policy.resolve(&j.path),
                min_severity: j.min_severity,
            },
            SinkConfig::Slack(s) => Sink::Slack(s.clone()),
            SinkConfig::Webhook(w) => Sink::Webhook(w.clone()),
            SinkConfig::Prometheus(p) => Sink::Prometheus(p.clone()),
        }
    }

    /// The name delivery marks are kept under.
    pub fn name(&self) -> &str {
        match self {
            Sink::Log(l) => l.name.as_deref().unwrap_or("log"),
            Sink::Jsonl { name, .. } => name,
            Sink::Slack(s) => s.name.as_deref().unwrap_or("slack"),
            Sink::Webhook(w) => w.name.as_deref().unwrap_or("webhook"),
            Sink::Prometheus(p) => p.name.as_deref().unwrap_or("prometheus"),
        }
    }

    /// Whether messages reach this sink through the durable outbox (events), or not at all (`log` writes at
    /// once; `prometheus` publishes state, which the next scrape or push carries in full).
    pub fn queued(&self) -> bool {
        match self {
            Sink::Jsonl { .. } | Sink::Slack(_) | Sink::Webhook(_) => true,
            Sink::Log(_) | Sink::Prometheus(_) => false,
        }
    }

    /// Write `msg` at once where the sink is immediate (`log`); queued sinks do nothing here.
    pub fn write_now(&self, msg: &Message) {
        match self {
            Sink::Log(l) => {
                for line in log::lines(msg, l.min_severity) {
                    eprintln!("{line}");
                }
            }
            Sink::Jsonl { .. } | Sink::Slack(_) | Sink::Webhook(_) | Sink::Prometheus(_) => {}
        }
    }

    /// Deliver one queued message, resuming after `parts_done` acknowledged parts; `delivery_id` lets a
    /// receiver drop a repeat after a lost acknowledgement.
    pub async fn deliver(
        &self,
        msg: Message,
        delivery_id: i64,
        parts_done: u32,
        poster: &Poster,
        on_part: PartDone<'_>,
    ) -> Result<(), DeliveryError> {
        match self {
            Sink::Jsonl { path, min_severity, .. } => {
                let (path, min) = (path.clone(), *min_severity);
                let shown = path.display().to_string();
                let written = tokio::task::spawn_blocking(move || jsonl::append(&path, &msg, min)).await;
                match written {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(DeliveryError::Client(format!("cannot append to {shown}: {e}"))),
                    Err(e) => Err(DeliveryError::Client(format!("jsonl writer stopped: {e}"))),
                }
            }
            Sink::Slack(s) => {
                let parts = slack::payloads(&msg, s);
                for (i, part) in parts.iter().enumerate().skip(parts_done as usize) {
                    let body = serde_json::to_vec(part).map_err(|e| {
                        DeliveryError::Client(format!("cannot encode the Slack message: {e}"))
                    })?;
                    poster.post_json(&s.webhook_url, &[], &[], body).await?;
                    on_part(i as u32 + 1);
                }
                Ok(())
            }
            Sink::Webhook(w) => {
                let body = webhook::body(&msg, w.min_severity);
                let event = match msg {
                    Message::Report { .. } => "report",
                    Message::Announcement(_) => "announcement",
                };
                let mut headers = vec![
                    ("X-Simian-Event".to_string(), event.to_string()),
                    ("X-Simian-Delivery".to_string(), delivery_id.to_string()),
                ];
                if let Some(secret) = &w.secret {
                    headers.push((
                        "X-Simian-Signature".to_string(),
                        webhook::sign(secret.expose().as_bytes(), &body),
                    ));
                }
                let extra: Vec<_> = w.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                poster.post_json(&w.url, &headers, &extra, body).await
            }
            Sink::Log(_) | Sink::Prometheus(_) => Ok(()),
        }
    }
}
