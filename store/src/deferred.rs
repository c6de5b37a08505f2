//! Writes that failed while the store was unreachable, kept in this process and made when it is back: a
//! fault restored from memory (so it is not restored again, nor taken over), and the findings recorded
//! meanwhile (so the history and the outbox hear of them). In order, per store; a process that ends first
//! loses them, and then the fault stays open in the journal and a later revert restores it again
//! (restores are idempotent).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use simian_monkeys::{Finding, Mode};

use super::{Store, StoreAt, StoreError};

/// One write to make later.
#[derive(Debug, Clone)]
enum Write {
    Reverted { id: i64, at: DateTime<Utc>, note: Option<String> },
    Finding { run_id: String, at: DateTime<Utc>, mode: Mode, finding: Box<Finding> },
}

static QUEUE: Mutex<Vec<(StoreAt, Write)>> = Mutex::new(Vec::new());

fn push(at: &StoreAt, w: Write) {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner()).push((at.clone(), w));
}

/// Fault `id` was restored at `at` but the journal could not say so.
pub fn defer_reverted(store: &StoreAt, id: i64, at: DateTime<Utc>, note: Option<&str>) {
    push(store, Write::Reverted { id, at, note: note.map(str::to_string) });
}

/// A finding of run `run_id` could not be recorded.
pub fn defer_finding(store: &StoreAt, run_id: &str, at: DateTime<Utc>, mode: Mode, finding: &Finding) {
    push(store, Write::Finding { run_id: run_id.to_string(), at, mode, finding: Box::new(finding.clone()) });
}

/// How many writes wait for `store`.
pub fn deferred_count(store: &StoreAt) -> usize {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(s, _)| s == store).count()
}

impl Store {
    /// Makes the writes deferred for this store, oldest first; stops at the first that fails (it and the
    /// rest wait for the next call). How many were made.
    pub fn record_deferred(&mut self) -> Result<usize, StoreError> {
        let mine: Vec<Write> = {
            let mut q = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
            let (mine, others): (Vec<_>, Vec<_>) = q.drain(..).partition(|(s, _)| s == self.at());
            *q = others;
            mine.into_iter().map(|(_, w)| w).collect()
        };
        let mut done = 0;
        for (i, w) in mine.iter().enumerate() {
            let r = match w {
                Write::Reverted { id, at, note } => self.fault_reverted(*id, *at, note.as_deref()),
                Write::Finding { run_id, at, mode, finding } => self.add_finding(run_id, *at, *mode, finding),
            };
            if let Err(e) = r {
                let mut q = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
                let rest = mine[i..].iter().cloned().map(|w| (self.at().clone(), w));
                let later = std::mem::take(&mut *q);
                q.extend(rest);
                q.extend(later);
                return Err(e);
            }
            done += 1;
        }
        Ok(done)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use crate::tests::isolation;
    use simian_monkeys::{MonkeyName, Outcome, Severity};

    crate::tests::on_both_backends! {
        fn a_revert_and_findings_made_while_the_store_was_down_are_recorded_when_it_is_back(at) {
            let mut s = Store::open(&at).unwrap();
            let now = Utc::now();
            s.begin_run("r", 1, Mode::Live, now).unwrap();
            let id = isolation(&s, Some("me"), "web", now, now).unwrap();
            let f = Finding::run_level(MonkeyName::Gorilla, Outcome::Done, Severity::Info, "isolate reverted");
            defer_reverted(&at, id, now, None);
            defer_finding(&at, "r", now, Mode::Live, &f);
            assert_eq!(deferred_count(&at), 2);
            assert_eq!(s.open_faults(None).unwrap().len(), 1);
            assert_eq!(s.record_deferred().unwrap(), 2);
            assert_eq!(deferred_count(&at), 0);
            assert!(s.open_faults(None).unwrap().is_empty());
            assert_eq!(s.history(now - chrono::TimeDelta::hours(1)).unwrap()[0].finding, f);
            assert_eq!(s.record_deferred().unwrap(), 0, "made once");
        }
    }
}
