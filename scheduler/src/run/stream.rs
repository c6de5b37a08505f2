//! A round's findings as they happen: each goes into the store — attached to the run's open outbox
//! message, in the same transaction — the moment it is pushed, and `flush` seals that message and
//! delivers it, so chat hears of a cut zone when it is cut, and a crash loses nothing.

use simian_config::{LoadedPolicy, Mode};
use simian_monkeys::{Finding, Report};
use simian_sinks::http::Poster;
use simian_sinks::Sink;
use tracing::{error, warn};

use super::RunError;
use crate::clock::Clock;
use crate::outbox::{self, Urgency};
use crate::store::{Store, StoreError};

/// The findings of one round, recorded as they are pushed.
pub struct Out<'a> {
    store: Store,
    run_id: String,
    mode: Mode,
    policy: &'a LoadedPolicy,
    sinks: Vec<Sink>,
    poster: Option<&'a Poster>,
    clock: &'a dyn Clock,
    findings: Vec<Finding>,
    /// The first store error: the round stops at its next flush (the findings stay in memory for the report).
    failed: Option<StoreError>,
}

impl<'a> Out<'a> {
    pub(crate) fn new(
        store: Store,
        run_id: String,
        mode: Mode,
        policy: &'a LoadedPolicy,
        poster: Option<&'a Poster>,
        clock: &'a dyn Clock,
    ) -> Self {
        let sinks = Sink::all(policy);
        Out { store, run_id, mode, policy, sinks, poster, clock, findings: Vec::new(), failed: None }
    }

    /// Record one finding now; one the store cannot take (it is down) waits in this process and is recorded
    /// when the store is back.
    pub fn push(&mut self, f: Finding) {
        let now = self.clock.now();
        if self.failed.is_none() {
            if let Err(e) = self.store.add_finding(&self.run_id, now, self.mode, &f) {
                error!(error = %crate::chain(&e), "cannot record a finding; the round stops at its next step");
                self.failed = Some(e);
            }
        }
        if self.failed.is_some() {
            crate::store::defer_finding(self.store.at(), &self.run_id, now, self.mode, &f);
        }
        self.findings.push(f);
    }

    /// Record several findings now, in order.
    pub fn extend(&mut self, fs: impl IntoIterator<Item = Finding>) {
        for f in fs {
            self.push(f);
        }
    }

    /// Everything recorded so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The end of an action phase, or the start of a long wait: seal what was recorded since the last
    /// flush into one message and deliver it to every sink now.
    pub async fn flush(&mut self) -> Result<(), RunError> {
        self.flush_with(None).await
    }

    /// Like [`flush`](Self::flush); `last` (the finished report) lends its summary to the final message.
    pub(crate) async fn flush_with(&mut self, last: Option<&Report>) -> Result<(), RunError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        let fresh =
            outbox::seal(&mut self.store, self.policy, &self.sinks, Some(&self.run_id), last, self.clock)?;
        if fresh.is_empty() {
            return Ok(());
        }
        let Some(poster) = self.poster else { return Ok(()) };
        // A sink that is down only delays delivery: the message waits in the outbox, the round goes on.
        match outbox::deliver(&mut self.store, &self.sinks, poster, Urgency::Normal { fresh }, self.clock)
            .await
        {
            Ok(s) if !s.failed.is_empty() => {
                warn!(
                    pending = s.pending,
                    failed = s.failed.len(),
                    "some sinks are down; the outbox keeps their messages"
                )
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %crate::chain(&e), "cannot deliver from the outbox; it keeps the messages")
            }
        }
        Ok(())
    }

    /// The store connection (the round's own), handed back at the end.
    pub(crate) fn into_parts(self) -> (Store, Vec<Finding>) {
        (self.store, self.findings)
    }
}
