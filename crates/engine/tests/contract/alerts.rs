//! Operator events: each fires once per period, across restarts.

use crate::support::Harness;
use chrono::TimeDelta;
use mediagen_domain::Money;
use mediagen_domain::credit::CreditPurchase;
use mediagen_ports::Severity;

#[tokio::test(start_paused = true)]
async fn budget_thresholds_alert_once_per_month_across_restarts() {
    let mut h = Harness::new();
    h.config.budget.monthly_budget = Some(Money::from_dollars(100));
    h.world().fal_cost_this_month = Money::from_dollars(85);
    h.run_for(2).await;
    h.run_for(2).await;

    let w = h.world();
    let titles: Vec<&str> = w.operator_alerts.iter().map(|a| a.title.as_str()).collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(titles[0].contains("50%") && titles[1].contains("80%"), "{titles:?}");
    assert!(w.alert_log.contains(&("budget-80".to_owned(), "2026-11".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn a_coming_limit_drop_is_announced_with_the_top_up_that_keeps_it() {
    let h = Harness::new();
    {
        let mut w = h.world();
        let account = w.account("main", 0);
        w.accounts[0].limit_override = None;
        // $10 bought 27 days ago: limit 10 today, back to 2 tomorrow when it leaves the window.
        let purchase = CreditPurchase { amount: Money::from_dollars(10), purchased_at: w.now - TimeDelta::days(27) };
        w.purchases.insert(account, vec![purchase]);
    }
    h.run_for(2).await;
    h.run_for(2).await;

    let w = h.world();
    assert_eq!(w.operator_alerts.len(), 1, "{:?}", w.operator_alerts);
    let alert = &w.operator_alerts[0];
    assert_eq!(alert.severity, Severity::Warning);
    assert!(alert.title.contains("from 10 to 2"), "{}", alert.title);
    assert!(alert.body.contains("buy $10.0000"), "{}", alert.body);
}

#[tokio::test(start_paused = true)]
async fn reaching_a_volume_discount_tier_is_announced_once() {
    let h = Harness::new();
    h.world().requests_this_month = 1200;
    h.run_for(2).await;
    h.run_for(2).await;
    let w = h.world();
    assert_eq!(w.operator_alerts.len(), 1);
    assert!(w.operator_alerts[0].title.contains("volume"), "{}", w.operator_alerts[0].title);
}
