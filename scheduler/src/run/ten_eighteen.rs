//! 10-18 Monkey's round: read timezone, locale and clock of every instance through its executor (and its
//! URL's `Date` header), then report drift from the policy or from the group's majority.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use simian_config::MonkeyName;
use simian_monkeys::ten_eighteen::{self as te, DriftKind, Expect, Facts, Override};
use simian_monkeys::{Action, Actuator, Finding, Instance, Outcome};

use super::{Out, Round, RunError};

const M: MonkeyName = MonkeyName::TenEighteen;
const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(2);
/// Instances read at once.
const CONCURRENCY: usize = 64;

fn action(kind: DriftKind) -> Action {
    match kind {
        DriftKind::TimezoneDrift => Action::TimezoneDrift,
        DriftKind::LocaleDrift => Action::LocaleDrift,
        DriftKind::ClockSkew => Action::ClockSkew,
        // A fact that could not be read is reported as a probe error of this monkey.
        DriftKind::UnknownFact => Action::ProbeError,
    }
}

/// Real wall time, on purpose: 10-18 compares this machine's clock with each instance's.
#[allow(clippy::disallowed_methods)]
fn epoch_now() -> f64 {
    let now = chrono::Utc::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_nanos()) / 1e9
}

impl<A: Actuator> Round<'_, '_, A> {
    /// 10-18 Monkey: observation only, so it runs in dry-run too and needs no opt-in.
    pub(crate) async fn ten_eighteen(&mut self, out: &mut Out<'_>) -> Result<(), RunError> {
        let policy = self.policy;
        let (cfg, inventory) = match self.observable(M, policy.policy.monkeys.ten_eighteen.as_ref()) {
            Ok(found) => found,
            Err(f) => {
                out.push(f);
                return Ok(());
            }
        };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().ok();
        let actuator = self.ctx.actuator;
        let mut read: Vec<(Instance, Facts)> = stream::iter(inventory.iter().cloned().map(|inst| {
            let client = client.as_ref();
            async move {
                let facts = facts_of(actuator, client, &inst).await;
                (inst, facts)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
        read.sort_by(|a, b| a.0.inventory_order(&b.0));
        let fleet = Expect { timezone: cfg.expect.timezone.clone(), locale: cfg.expect.locale.clone() };
        let overrides: Vec<Override> = cfg
            .overrides
            .iter()
            .map(|o| Override {
                zone: o.zone.clone(),
                region: o.region.clone(),
                group: o.group.clone(),
                timezone: o.timezone.clone(),
                locale: o.locale.clone(),
            })
            .collect();
        let max_skew = cfg.max_clock_skew.map(|d| d.std()).unwrap_or(DEFAULT_MAX_SKEW);
        let found = te::drift(&read, &fleet, &overrides, max_skew);
        for f in &found {
            let mut finding =
                Finding::about(M, action(f.kind), Outcome::Done, f.kind.severity(), &f.instance, f.message());
            finding.details.insert("expected".into(), f.expected.clone());
            finding.details.insert("actual".into(), f.actual.clone());
            out.push(finding);
        }
        let mut summary = super::summary_value(&te::summary(&found));
        if let Some(obj) = summary.as_object_mut() {
            obj.insert("checked".into(), read.len().into());
        }
        self.summary.insert("ten_eighteen".into(), summary);
        Ok(())
    }
}

/// Read one instance's facts: the fixed script through its executor, then its URL's `Date` header.
async fn facts_of<A: Actuator>(actuator: &A, client: Option<&reqwest::Client>, inst: &Instance) -> Facts {
    let argv = ["sh".to_string(), "-c".to_string(), te::facts_script().to_string()];
    let sent = epoch_now();
    let started = tokio::time::Instant::now();
    let mut facts = match actuator.run_on(inst, &argv).await {
        Ok(o) if o.status == 0 => te::parse_facts(&o.stdout, started.elapsed(), sent),
        Ok(_) | Err(_) => Facts::default(),
    };
    if let (Some(client), Some(template)) = (client, inst.url.as_ref()) {
        if let Ok(url) = simian_targets::template::render(std::slice::from_ref(template), inst) {
            let sent = epoch_now();
            let started = tokio::time::Instant::now();
            if let Ok(r) = client.get(url.concat()).send().await {
                let rtt = started.elapsed();
                let date = r
                    .headers()
                    .get(reqwest::header::DATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(te::parse_http_date);
                if let Some(date) = date {
                    facts.clock_skew =
                        te::worst_skew(facts.clock_skew, te::skew_from_http_date(date, sent, rtt));
                }
            }
        }
    }
    facts
}
