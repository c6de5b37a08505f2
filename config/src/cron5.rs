//! Standard 5-field cron (`*/15 9-17 * * mon-fri`, 0/7 = Sunday), translated for the `cron` crate. (STUB)

use std::fmt;

/// A parsed 5-field cron expression.
#[derive(Clone)]
pub struct Cron {
    expr: String,
    schedule: cron::Schedule,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.expr)
    }
}

impl Cron {
    /// Parse a standard 5-field expression; the error says what is wrong and how to write it.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let six = format!("0 {expr}");
        let schedule = six.parse::<cron::Schedule>().map_err(|e| format!("invalid cron `{expr}`: {e}"))?;
        Ok(Cron { expr: expr.to_string(), schedule })
    }
    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }
    /// The translated schedule (seconds field first, `cron` crate weekday numbering).
    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }
}
