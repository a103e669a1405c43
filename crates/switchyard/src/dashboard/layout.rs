//! What every page shares: the frame (navigation, signed-in user, CSRF token)
//! and small formatting helpers for figures shown in templates.

use crate::dashboard::session::Session;
use crate::domain::{format_time, now_ms, EndpointStatus};
use crate::money::micros_to_credits_json;

/// The page frame rendered by `templates/base.html`.
pub struct Layout {
    pub title: String,
    /// Which navigation entry is current: overview, endpoints, deploy, playground, billing.
    pub nav: &'static str,
    pub user_name: String,
    pub csrf: String,
    /// The page's ES module under `/assets/`, if it has one.
    pub script: Option<&'static str>,
}

impl Layout {
    /// The frame of a page for a signed-in user.
    pub fn new(session: &Session, title: impl Into<String>, nav: &'static str) -> Self {
        Self {
            title: title.into(),
            nav,
            user_name: session.user.name.clone(),
            csrf: session.csrf.clone(),
            script: None,
        }
    }

    /// Adds the page's ES module.
    pub fn with_script(mut self, script: &'static str) -> Self {
        self.script = Some(script);
        self
    }

    /// `aria-current` for a navigation entry.
    pub fn current(&self, nav: &str) -> &'static str {
        if self.nav == nav {
            "page"
        } else {
            "false"
        }
    }
}

/// Credits from micro-dollars, as shown (`12.5`).
pub fn credits(micros: i64) -> String {
    match micros_to_credits_json(micros) {
        serde_json::Value::Number(number) => number.to_string(),
        other => other.to_string(),
    }
}

/// A count with thousands separators (`12,345`).
pub fn count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Milliseconds as shown (`840 ms`, `1.2 s`, `—` when there were no requests).
pub fn latency(ms: i64, requests: i64) -> String {
    if requests == 0 {
        "—".to_owned()
    } else if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// An RFC 3339 time (for `<time datetime>`).
pub fn iso(ms: i64) -> String {
    format_time(ms)
}

/// A short relative time (`3 min ago`).
pub fn ago(ms: i64) -> String {
    let seconds = ((now_ms() - ms) / 1000).max(0);
    match seconds {
        0..=59 => "just now".to_owned(),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

/// The badge class of a status (colours are in app.css).
pub fn status_class(status: EndpointStatus) -> &'static str {
    match status {
        EndpointStatus::Active => "badge-active",
        EndpointStatus::Idle => "badge-idle",
        EndpointStatus::Provisioning | EndpointStatus::Scaling => "badge-deploying",
        EndpointStatus::Error => "badge-failed",
        EndpointStatus::Stopped | EndpointStatus::Terminated => "badge-muted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-4200), "-4,200");
    }

    #[test]
    fn latency_reads_well() {
        assert_eq!(latency(0, 0), "—");
        assert_eq!(latency(840, 3), "840 ms");
        assert_eq!(latency(1250, 3), "1.2 s");
    }
}
