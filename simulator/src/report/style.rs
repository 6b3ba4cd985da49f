//! One colour per policy; the colours and fonts themselves are the
//! library's ([`offer_bandit::palette`]), shared with the dashboard.

use crate::results::RunReport;

pub(super) use offer_bandit::palette::{AXIS, FONT, GRID, INK, MUTED, ORACLE, palette, text_on};

/// One colour per policy, the same in the table and every chart: policies
/// in summary order, then any policy only named by a curve or share entry.
pub(super) struct PolicyColours<'a> {
    names: Vec<&'a str>,
}

impl<'a> PolicyColours<'a> {
    pub(super) fn new(report: &'a RunReport) -> Self {
        let mut names: Vec<&str> = Vec::new();
        let all = report
            .policies
            .iter()
            .map(|p| p.policy.as_str())
            .chain(report.curves.iter().map(|c| c.policy.as_str()))
            .chain(report.shares.iter().map(|s| s.policy.as_str()));
        for name in all {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Self { names }
    }

    pub(super) fn of(&self, name: &str) -> &'static str {
        palette(self.names.iter().position(|n| *n == name).unwrap_or(0))
    }
}
