//! The daemon's scheduling under tokio's paused clock: twelve virtual minutes fire exactly the monkeys and
//! times their crons name, inside the calendar, and a reload takes effect from the next fire.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use simian_config::MonkeyName;
use simian_scheduler::daemon::{run, Clock, DaemonOptions, TokioClock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn policy(dir: &std::path::Path, chaos: &str, gorilla: &str, calendar: &str) -> simian_config::LoadedPolicy {
    let text = format!(
        "version: 1\nmode: dry-run\nsinks: [{{ type: jsonl, path: audit.jsonl }}]\n{calendar}targets:\n  - name: lab\n    type: hosts\n    terminate: [\"true\"]\n    hosts:\n      - {{ id: a1, group: web, zone: a, tags: {{ \"simian:opt-in\": \"true\" }} }}\n      - {{ id: b1, group: web, zone: b, tags: {{ \"simian:opt-in\": \"true\" }} }}\nmonkeys:\n  chaos:\n    schedule: \"{chaos}\"\n  gorilla:\n    schedule: \"{gorilla}\"\n    zone: a\n    action: terminate\n"
    );
    let path = dir.join("simian.yaml");
    std::fs::write(&path, text).unwrap();
    simian_config::load(&path).unwrap()
}

/// Run the daemon for `minutes` of virtual time from `anchor`; each round's (monkey, virtual time).
async fn fires(
    p: simian_config::LoadedPolicy,
    anchor: &str,
    minutes: u64,
    between: impl FnOnce(mpsc::Sender<()>) -> Option<(u64, Box<dyn FnOnce()>)>,
) -> Vec<(MonkeyName, String)> {
    let clock = Arc::new(TokioClock::starting_at(anchor.parse::<DateTime<Utc>>().unwrap()));
    let (hup_tx, hup_rx) = mpsc::channel(1);
    let (tx, mut rx) = mpsc::unbounded_channel::<(MonkeyName, simian_monkeys::Report)>();
    let shutdown = CancellationToken::new();
    let opts = DaemonOptions {
        listen: None,
        shutdown: shutdown.clone(),
        reload: hup_rx,
        clock: clock.clone(),
        on_round: Some(tx),
        on_listen: None,
    };
    let step = between(hup_tx);
    // Stamp each report with the virtual time it arrives at, while the test moves time on.
    let stamps = clock.clone();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((m, _report)) = rx.recv().await {
            seen.push((m, stamps.now().format("%H:%M").to_string()));
        }
        seen
    });
    // The daemon runs on a LocalSet (not Send): drive it beside the script instead of spawning it.
    let script = async move {
        let mut elapsed = 0;
        if let Some((at, f)) = step {
            tokio::time::sleep(Duration::from_secs(at * 60)).await;
            elapsed = at;
            f();
        }
        tokio::time::sleep(Duration::from_secs((minutes - elapsed) * 60)).await;
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(run(p, opts), script);
    result.unwrap();
    collector.await.unwrap()
}

fn at(m: MonkeyName, t: &str) -> (MonkeyName, String) {
    (m, t.to_string())
}

#[tokio::test(start_paused = true)]
async fn twelve_virtual_minutes_fire_each_monkey_at_its_cron_times() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy(dir.path(), "*/2 * * * *", "*/3 * * * *", "");
    let seen = fires(p, "2026-01-05T10:00:30Z", 12, |_| None).await;
    use MonkeyName::{Chaos, Gorilla};
    let want = vec![
        at(Chaos, "10:02"),
        at(Gorilla, "10:03"),
        at(Chaos, "10:04"),
        at(Chaos, "10:06"),
        at(Gorilla, "10:06"),
        at(Chaos, "10:08"),
        at(Gorilla, "10:09"),
        at(Chaos, "10:10"),
        at(Chaos, "10:12"),
        at(Gorilla, "10:12"),
    ];
    assert_eq!(seen, want);
    // Every report also went through the outbox into the jsonl sink.
    let lines = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(lines.lines().count() >= want.len(), "{lines}");
}

#[tokio::test(start_paused = true)]
async fn the_calendar_holds_fires_outside_its_hours() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy(dir.path(), "*/5 * * * *", "0 0 1 1 *", "calendar:\n  hours: \"10:10-10:20\"\n");
    let seen = fires(p, "2026-01-05T10:00:30Z", 30, |_| None).await;
    let want = vec![at(MonkeyName::Chaos, "10:10"), at(MonkeyName::Chaos, "10:15")];
    assert_eq!(seen, want);
}

#[tokio::test(start_paused = true)]
async fn a_reload_applies_from_the_next_fire() {
    let dir = tempfile::tempdir().unwrap();
    let p = policy(dir.path(), "*/2 * * * *", "0 0 1 1 *", "");
    let path = p.path.clone();
    let seen = fires(p, "2026-01-05T10:00:30Z", 10, move |hup| {
        Some((
            5,
            Box::new(move || {
                // At 10:05:30 chaos moves to every 4 minutes of the hour's 4-multiples + 1.
                let text = std::fs::read_to_string(&path).unwrap().replace("*/2 * * * *", "1-59/4 * * * *");
                std::fs::write(&path, text).unwrap();
                hup.try_send(()).unwrap();
            }) as Box<dyn FnOnce()>,
        ))
    })
    .await;
    let got: Vec<_> = seen.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(got, ["10:02", "10:04", "10:09"]);
}
