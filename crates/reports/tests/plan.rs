//! The capacity plan as the operator reads it, for the seed scenario: about a hundred users
//! whose evening peak keeps 20 to 30 jobs wanting to run at once.

use chrono::{TimeDelta, TimeZone, Utc};
use mediagen_domain::credit::ConcurrencyTiers;
use mediagen_domain::insights::PlanReport;
use mediagen_domain::planner::{CurrentCapacity, PlannerJob, PlannerSettings, Recommendation, Span, plan};
use mediagen_domain::{ModelId, Money, Timestamp};
use mediagen_reports::text;

/// xorshift64*: the same synthetic week on every run.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
}

/// A week of Poisson arrivals at `rate(hour)` per second, each holding a slot for an
/// exponential 20 s (nano-banana) or 40 s (flux-pro, one job in five).
fn week(start: Timestamp, rate: impl Fn(i64) -> f64) -> (Vec<PlannerJob>, Vec<Span>) {
    let mut rng = Rng(0x5EED_0001);
    let end = start + TimeDelta::days(7);
    let (mut t, mut jobs, mut slots) = (start, Vec::new(), Vec::new());
    let max = (0..24).map(&rate).fold(0.0f64, f64::max);
    loop {
        t += TimeDelta::milliseconds((rng.exponential(1.0 / max) * 1000.0) as i64);
        if t >= end {
            return (jobs, slots);
        }
        if rng.unit() > rate((t - start).num_hours() % 24) / max {
            continue;
        }
        let (model, mean) =
            if rng.unit() < 0.2 { ("fal-ai/flux-pro/v1.1", 40.0) } else { ("fal-ai/nano-banana", 15.0) };
        let held = TimeDelta::milliseconds((rng.exponential(mean) * 1000.0).max(1.0) as i64);
        jobs.push(PlannerJob {
            model: ModelId::new(model),
            enqueued_at: t,
            first_claimed_at: Some(t),
            finished_at: Some(t + held),
            slot_time: held,
        });
        slots.push(Span { start: t, end: Some(t + held) });
    }
}

#[test]
fn the_seed_scenario_reads_as_the_500_dollar_tier_for_30_slots() {
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    // Mean slot time 0.8 × 15 + 0.2 × 40 = 20 s; the 19:00 peak brings 1.1 jobs a second.
    let (jobs, slots) = week(start, |hour| match hour {
        0..=7 => 0.01,
        8..=15 => 0.25,
        16..=18 => 0.6,
        19 => 1.1,
        20..=21 => 0.6,
        _ => 0.1,
    });
    let now = start + TimeDelta::days(7);
    let settings = PlannerSettings { history_days: 7, ..PlannerSettings::default() };
    let current = CurrentCapacity { accounts: 1, slots: 20 };
    let plan = plan(&jobs, &slots, current, &ConcurrencyTiers::default(), &settings, now);
    let Recommendation::Tier(chosen) = plan.recommendation else { panic!("{:?}", plan.recommendation) };
    assert_eq!((plan.options[chosen].min_window_sum, plan.options[chosen].limit), (Some(Money::from_dollars(500)), 30));

    let report =
        PlanReport { plan, accounts: Vec::new(), spend_last_window: Money::from_dollars(640), window_days: 28 };
    let text = text::plan(&report);
    let line =
        |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}:\n{text}"));
    assert!(line("  $100 / 20 → 20 slots: ").contains("never drains"), "{text}");
    assert!(line("  ▶ $500 / 30 → 30 slots: ").ends_with(" ✓"), "{text}");
    assert!(line("  $1000 / 40 → 40 slots: ").ends_with(" ✓"), "{text}");
    // The synthetic week was served with ample capacity, so nobody waited.
    assert_eq!(
        line("Now: "),
        "Now: 1 account(s), 20 slots → the model predicts a p95 wait of never drains (observed p95 0.0 s)"
    );
    assert!(
        line("Recommendation: ").starts_with(
            "Recommendation: the $500 tier — keep at least $500 of purchases in every 28-day window on each of 1 account(s) for 30 slots each"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("fal spend over the last 28 days was $640.0000, so the purchases are credit you use anyway.")
    );
    println!("{text}");
}
