//! The cost allocation as CSV: who spent what on which model, and what fal charges for it.

use mediagen_domain::Money;
use mediagen_domain::insights::usage::{MonthTiers, group};
use mediagen_domain::insights::{CostAllocation, UsageRow};
use std::collections::BTreeSet;

/// The header of [`allocation`].
pub const HEADER: &str =
    "user_id,model,jobs,succeeded,failed,canceled,charged_usd,refunded_usd,fal_list_usd,fal_discounted_usd";

/// Dollars with all six decimals, as spreadsheets read them: `12.340000`, `-0.000001`.
pub fn dollars(money: Money) -> String {
    money.plain_six_decimals()
}

/// The cost allocation as a CSV file: its name and content (see [`allocation`]).
pub fn cost_allocation(costs: &CostAllocation) -> (String, String) {
    let name = format!("mediagen-costs-{}-{}.csv", costs.period.kind, costs.period.from.format("%Y-%m-%d"));
    (name, allocation(&costs.rows, &costs.tiers))
}

/// One row per (user, model) of `rows`, ordered by user id then model id, then a `total`
/// row that sums the rows above it. `fal_discounted_usd` applies each calendar month's
/// volume tier to that row's list cost in the month (rounded per row). Fields are quoted
/// where they must be, so a comma or a quote in a model id keeps its column.
pub fn allocation(rows: &[UsageRow], tiers: &MonthTiers) -> String {
    let by_user_and_model = |r: &UsageRow| (r.user.0, r.model.as_str().to_owned());
    // `group` returns its lines in key order, the order of this set.
    let keys: BTreeSet<(i64, String)> = rows.iter().map(by_user_and_model).collect();
    let lines = group(rows, tiers, by_user_and_model, |_| String::new());
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut write = |record: [String; 10]| {
        // Writing to memory fails only on allocation failure.
        out.write_record(record).expect("CSV into memory");
    };
    write(HEADER.split(',').map(str::to_owned).collect::<Vec<_>>().try_into().expect("ten columns"));
    let mut sums = [0u64; 4];
    let mut money = [Money::ZERO; 4];
    for ((user, model), line) in keys.into_iter().zip(&lines) {
        write([
            user.to_string(),
            model,
            line.jobs.to_string(),
            line.succeeded.to_string(),
            line.failed.to_string(),
            line.canceled.to_string(),
            dollars(line.user_charged),
            dollars(line.user_refunded),
            dollars(line.fal_list),
            dollars(line.fal_discounted),
        ]);
        for (sum, n) in sums.iter_mut().zip([line.jobs, line.succeeded, line.failed, line.canceled]) {
            *sum += n;
        }
        for (sum, m) in
            money.iter_mut().zip([line.user_charged, line.user_refunded, line.fal_list, line.fal_discounted])
        {
            *sum = sum.saturating_add(m);
        }
    }
    write([
        "total".to_owned(),
        String::new(),
        sums[0].to_string(),
        sums[1].to_string(),
        sums[2].to_string(),
        sums[3].to_string(),
        dollars(money[0]),
        dollars(money[1]),
        dollars(money[2]),
        dollars(money[3]),
    ]);
    let bytes = out.into_inner().expect("CSV into memory");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use mediagen_domain::discount::VolumeDiscounts;
    use mediagen_domain::insights::DayCount;
    use mediagen_domain::{AccountId, ModelId, UserId};

    fn row(user: i64, model: &str, jobs: u64, charged: i64, fal: i64) -> UsageRow {
        UsageRow {
            day: NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(),
            user: UserId(user),
            model: ModelId::new(model),
            account: Some(AccountId::new("main")),
            jobs,
            succeeded: jobs - 1,
            failed: 1,
            canceled: 0,
            user_charged: Money::from_micros(charged),
            user_refunded: Money::from_micros(10_000),
            fal_cost: Money::from_micros(fal),
        }
    }

    #[test]
    fn one_row_per_user_and_model_with_the_month_discount_and_a_total() {
        let requests = [DayCount { day: NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(), count: 6_000 }];
        let tiers = MonthTiers::new(&requests, &VolumeDiscounts::default());
        let rows = [row(7, "b", 3, 120_000, 117_000), row(7, "a", 2, 80_000, 78_001), row(5, "a", 4, 160_000, 156_000)];
        assert_eq!(
            allocation(&rows, &tiers),
            "user_id,model,jobs,succeeded,failed,canceled,charged_usd,refunded_usd,fal_list_usd,fal_discounted_usd\n\
             5,a,4,3,1,0,0.160000,0.010000,0.156000,0.140400\n\
             7,a,2,1,1,0,0.080000,0.010000,0.078001,0.070201\n\
             7,b,3,2,1,0,0.120000,0.010000,0.117000,0.105300\n\
             total,,9,6,3,0,0.360000,0.030000,0.351001,0.315901\n"
        );
        assert_eq!(dollars(Money::from_micros(-1)), "-0.000001");
    }

    #[test]
    fn a_comma_or_a_quote_in_a_model_id_keeps_its_column() {
        let tiers = MonthTiers::new(&[], &VolumeDiscounts::default());
        let rows = [row(5, "fal-ai/x,y", 2, 80_000, 78_000), row(5, "say \"hi\"", 2, 80_000, 78_000)];
        let text = allocation(&rows, &tiers);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3, "{text}");
        assert!(records.iter().all(|r| r.len() == 10), "{text}");
        assert_eq!(&records[0][1], "fal-ai/x,y");
        assert_eq!(&records[1][1], "say \"hi\"");
        assert_eq!(&records[2][0], "total");
    }
}
