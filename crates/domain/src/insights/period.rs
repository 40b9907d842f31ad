//! Report periods: a UTC day, the last seven days, or a UTC month.

use crate::Timestamp;
use crate::quota::{day_start, month_start};
use chrono::{NaiveDate, TimeDelta};
use std::fmt;

/// Which summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// One UTC day.
    Day,
    /// Seven UTC days.
    Week,
    /// One UTC calendar month.
    Month,
}

impl ReportKind {
    /// Parses `day`, `week` or `month` (any case).
    pub fn parse(text: &str) -> Option<ReportKind> {
        match text.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" | "today" => Some(ReportKind::Day),
            "week" | "weekly" => Some(ReportKind::Week),
            "month" | "monthly" => Some(ReportKind::Month),
            _ => None,
        }
    }

    /// `day`, `week` or `month`.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Day => "day",
            ReportKind::Week => "week",
            ReportKind::Month => "month",
        }
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A half-open stretch `[from, to)` a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Which summary.
    pub kind: ReportKind,
    /// First instant.
    pub from: Timestamp,
    /// First instant after.
    pub to: Timestamp,
}

impl Period {
    /// The period so far, for an operator who asks now: today since midnight, the last
    /// seven days including today, or the month to date.
    pub fn to_date(kind: ReportKind, now: Timestamp) -> Period {
        let from = match kind {
            ReportKind::Day => day_start(now),
            ReportKind::Week => day_start(now) - TimeDelta::days(6),
            ReportKind::Month => month_start(now),
        };
        Period { kind, from, to: now }
    }

    /// The last complete period before `now`, for scheduled summaries: yesterday, the
    /// seven days before today, or last month.
    pub fn previous(kind: ReportKind, now: Timestamp) -> Period {
        let today = day_start(now);
        let (from, to) = match kind {
            ReportKind::Day => (today - TimeDelta::days(1), today),
            ReportKind::Week => (today - TimeDelta::days(7), today),
            ReportKind::Month => {
                let this_month = month_start(now);
                (month_start(this_month - TimeDelta::days(1)), this_month)
            }
        };
        Period { kind, from, to }
    }

    /// The UTC days the period touches, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        days_between(self.from, self.to)
    }

    /// `2026-11-24`, `2026-11-18 – 2026-11-24` or `2026-11` (with "so far" when the
    /// period ends before its natural end).
    pub fn label(&self) -> String {
        let days = self.days();
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return self.from.format("%Y-%m-%d %H:%M").to_string();
        };
        match self.kind {
            ReportKind::Month => {
                let complete = self.to == crate::quota::next_month_start(self.from);
                let month = first.format("%Y-%m").to_string();
                if complete { month } else { format!("{month} (to {last})") }
            }
            _ if first == last => first.to_string(),
            _ => format!("{first} – {last}"),
        }
    }
}

/// The UTC days `[from, to)` touches; empty when `to <= from`.
pub fn days_between(from: Timestamp, to: Timestamp) -> Vec<NaiveDate> {
    if to <= from {
        return Vec::new();
    }
    let last = (to - TimeDelta::nanoseconds(1)).date_naive();
    let mut days = Vec::new();
    let mut day = from.date_naive();
    while day <= last {
        days.push(day);
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn at(month: u32, day: u32, hour: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, month, day, hour, 30, 0).unwrap()
    }

    fn midnight(month: u32, day: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
    }

    #[test]
    fn periods_to_date_and_previous_ones() {
        let now = at(12, 2, 9);
        assert_eq!(
            Period::to_date(ReportKind::Day, now),
            Period { kind: ReportKind::Day, from: midnight(12, 2), to: now }
        );
        assert_eq!(Period::to_date(ReportKind::Week, now).from, midnight(11, 26));
        assert_eq!(Period::to_date(ReportKind::Month, now).from, midnight(12, 1));
        let day = Period::previous(ReportKind::Day, now);
        assert_eq!((day.from, day.to), (midnight(12, 1), midnight(12, 2)));
        let week = Period::previous(ReportKind::Week, now);
        assert_eq!((week.from, week.to), (midnight(11, 25), midnight(12, 2)));
        let month = Period::previous(ReportKind::Month, now);
        assert_eq!((month.from, month.to), (midnight(11, 1), midnight(12, 1)));
        assert_eq!(
            Period::previous(ReportKind::Month, at(1, 5, 0)).from,
            Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn labels_and_days() {
        let now = at(12, 2, 9);
        assert_eq!(Period::previous(ReportKind::Day, now).label(), "2026-12-01");
        assert_eq!(Period::previous(ReportKind::Week, now).label(), "2026-11-25 – 2026-12-01");
        assert_eq!(Period::previous(ReportKind::Month, now).label(), "2026-11");
        assert_eq!(Period::to_date(ReportKind::Month, now).label(), "2026-12 (to 2026-12-02)");
        assert_eq!(Period::previous(ReportKind::Week, now).days().len(), 7);
        assert_eq!(days_between(midnight(12, 1), midnight(12, 1)), Vec::<NaiveDate>::new());
        assert_eq!(ReportKind::parse(" Week "), Some(ReportKind::Week));
        assert_eq!(ReportKind::parse("csv"), None);
    }
}
