//! The halt: a row in the store that stops every action of every simian sharing it (`simian halt`), until
//! `simian resume`. Reverts are never stopped by it; the journal claims refuse atomically while it stands.

use super::sql::{vals, Sql};
use super::{from_ms, ms, Store, StoreError};
use chrono::{DateTime, Utc};

/// A halt in force (or the one just lifted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Halt {
    /// Who asked: `user@host`.
    pub by: String,
    /// Why, as they said it.
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "halted by {} at {}", self.by, self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))?;
        match &self.reason {
            Some(r) => write!(f, ": {r}"),
            None => f.write_str(" (no reason given)"),
        }
    }
}

/// The longest reason a halt takes.
pub const MAX_HALT_REASON: usize = 500;

/// What is wrong with a halt's reason, if anything (`must be …`): it goes into every refused action's finding and chat
/// message, so it is one line of at most [`MAX_HALT_REASON`] characters.
pub fn halt_reason_problem(reason: &str) -> Option<String> {
    (reason.chars().count() > MAX_HALT_REASON || reason.chars().any(char::is_control)).then(|| {
        format!("must be one line of at most {MAX_HALT_REASON} characters (it is in every finding the halt causes)")
    })
}

impl Store {
    /// Records a halt; when one already stands it is kept (and returned with `false`).
    pub fn halt(
        &mut self,
        by: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Halt, bool), StoreError> {
        let tx = self.write_tx()?;
        if let Some(h) = current(&tx)? {
            return Ok((h, false));
        }
        tx.exec(
            r#"INSERT INTO halts ("by", reason, at_ms) VALUES (?1, ?2, ?3)"#,
            vals![by, reason, ms(now)],
        )?;
        tx.commit()?;
        Ok((Halt { by: by.to_string(), reason: reason.map(str::to_string), at: now }, true))
    }

    /// Lifts the halt in force; the one lifted, or `None` when there was none.
    pub fn resume(&mut self, by: &str, now: DateTime<Utc>) -> Result<Option<Halt>, StoreError> {
        let tx = self.write_tx()?;
        let Some(h) = current(&tx)? else { return Ok(None) };
        tx.exec(
            "UPDATE halts SET resumed_by = ?1, resumed_ms = ?2 WHERE resumed_ms IS NULL",
            vals![by, ms(now)],
        )?;
        tx.commit()?;
        Ok(Some(h))
    }

    /// The halt in force, if any.
    pub fn current_halt(&self) -> Result<Option<Halt>, StoreError> {
        current(self)
    }
}

/// The halt in force, read through `sql` (the store, or a write transaction that must refuse while it stands).
pub(crate) fn current(sql: &impl Sql) -> Result<Option<Halt>, StoreError> {
    let row = sql.row(
        r#"SELECT "by", reason, at_ms FROM halts WHERE resumed_ms IS NULL ORDER BY id DESC LIMIT 1"#,
        &[],
    )?;
    row.map(|r| Ok(Halt { by: r.text(0)?, reason: r.opt_text(1)?, at: from_ms(r.int(2)?) })).transpose()
}

/// Who is asking, for a halt or a resume: `user@host` (`$USER`, else the name of this process's uid in
/// /etc/passwd, else `uid N`).
pub fn who() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok().filter(|u| !u.is_empty());
    format!("{}@{}", user.unwrap_or_else(user_of_uid), super::host_name())
}

/// The login name of this process's real uid, from /proc and /etc/passwd (cron and containers often leave
/// `$USER` unset).
fn user_of_uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(uid) = status.lines().find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()) else {
        return "unknown".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&uid))
        .and_then(|f| f.first().map(|n| n.to_string()))
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read the real clock
mod tests {
    use super::*;
    use crate::tests::{inst, isolation};
    use crate::Claim;
    use chrono::TimeDelta;
    use simian_monkeys::Mode;

    #[test]
    fn who_names_a_user_and_this_host() {
        let w = who();
        let (user, host) = w.split_once('@').expect("user@host");
        assert!(!user.is_empty() && user != "unknown", "{w}");
        assert_eq!(host, crate::host_name());
        // Without $USER the uid's name is used (root in CI, whoever runs the tests elsewhere).
        assert!(!user_of_uid().is_empty() && user_of_uid() != "unknown");
    }

    crate::tests::on_both_backends! {
        fn a_halt_stands_until_resumed_and_the_claims_refuse_meanwhile(at) {
            let mut s = Store::open(&at).unwrap();
            let now = Utc::now();
            s.begin_run("r", 1, Mode::Live, now).unwrap();
            assert_eq!(s.current_halt().unwrap(), None);
            assert_eq!(s.resume("ops@lab", now).unwrap(), None, "nothing to resume");

            let (h, new) = s.halt("ops@lab", Some("game day over"), now).unwrap();
            assert!(new);
            assert_eq!(
                h.to_string(),
                format!(
                    "halted by ops@lab at {}: game day over",
                    h.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            );
            // A second halt keeps the first (who and why stay those of the first).
            let (again, new) = s.halt("other@lab", None, now + TimeDelta::seconds(1)).unwrap();
            assert!(!new);
            assert_eq!(again.by, "ops@lab");
            assert_eq!(s.current_halt().unwrap().map(|h| h.by), Some("ops@lab".to_string()));

            // Halted: neither a kill nor a fault can be journaled, whatever the gate said before.
            let day = Some(TimeDelta::days(1));
            assert!(
                matches!(s.claim_kill("r", &inst("web"), now, day).unwrap(), Claim::Halted(h) if h.by == "ops@lab")
            );
            let fault = isolation(&s, None, "web", now, now);
            assert!(fault.is_none(), "a fault journaled while halted");
            assert!(s.open_faults(None).unwrap().is_empty());

            let lifted = s.resume("ops@lab", now).unwrap();
            assert_eq!(lifted.map(|h| h.reason), Some(Some("game day over".to_string())));
            assert_eq!(s.current_halt().unwrap(), None);
            assert!(matches!(s.claim_kill("r", &inst("web"), now, day).unwrap(), Claim::Granted(_)));
            let fault = isolation(&s, None, "web", now, now);
            assert!(fault.is_some());
        }
    }
}
