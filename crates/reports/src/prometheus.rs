//! Everything `/metrics` exports, as one OpenMetrics text document encoded by
//! `prometheus-client`: the live gauges, a process's counters and the job-time histograms.
//!
//! Each part is a [`Collector`] that hands the library descriptors and samples, so the
//! metric names, the escaping of label values and the closing `# EOF` are the library's, and
//! one registry encodes the whole document at once (each family declared once).

use mediagen_domain::insights::{AccountState, Histogram, JobTimes, Live, Metrics, OutcomeCount, Spend};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use std::fmt;

pub use mediagen_domain::insights::Counter;

/// The `Content-Type` of every document this module renders.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The live gauges and `counters`, as a whole document.
pub fn render(live: &Live, counters: &[Counter]) -> String {
    encode(vec![Box::new(LiveCollector(live.clone())), Box::new(CounterCollector(counters.to_vec()))])
}

/// The job-time histograms (`mediagen_job_wait_seconds`, `mediagen_fal_latency_seconds`,
/// `mediagen_job_seconds`), labelled by model and account, as a whole document.
pub fn render_job_times(times: &[JobTimes]) -> String {
    encode(vec![Box::new(JobTimeCollector(times.to_vec()))])
}

/// Everything the metrics endpoint exports, as one document: the live gauges, this
/// process's counters, then the job-time histograms.
pub fn render_metrics(metrics: &Metrics) -> String {
    encode(vec![
        Box::new(LiveCollector(metrics.live.clone())),
        Box::new(CounterCollector(metrics.counters.clone())),
        Box::new(JobTimeCollector(metrics.job_times.clone())),
        Box::new(OutcomeCollector(metrics.outcomes.clone())),
    ])
}

/// One registry of `collectors`, encoded in their order and closed with `# EOF`.
fn encode(collectors: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::default();
    for collector in collectors {
        registry.register_collector(collector);
    }
    let mut out = String::new();
    // Writing to a String cannot fail, and the collectors fail only when the writer does.
    let _ = text::encode(&mut out, &registry);
    out
}

/// A gauge without labels.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
    encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&value)
}

/// A gauge family with a sample per label set, declared even when it has none (no accounts,
/// no measured waits).
fn gauges<L, V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: EncodeGaugeValue,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// The label of a per-account gauge.
fn account(a: &AccountState) -> [(&'static str, &str); 1] {
    [("account", a.id.as_str())]
}

/// The live gauges: read from storage, so the same in every process.
#[derive(Debug)]
struct LiveCollector(Live);

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let (live, e) = (&self.0, &mut encoder);
        let jobs = live.jobs.by_name().map(|(state, n)| ([("state", state)], n));
        gauges(e, "mediagen_jobs", "Jobs stored, by current state.", jobs)?;
        gauge(e, "mediagen_queue_length", "Jobs waiting in our queue.", live.jobs.queued)?;

        let accounts = &live.accounts;
        let in_flight = accounts.iter().map(|a| (account(a), a.in_flight));
        gauges(e, "mediagen_account_in_flight", "Jobs in flight on each fal account.", in_flight)?;
        let limit = accounts.iter().map(|a| (account(a), a.limit));
        gauges(e, "mediagen_account_limit", "Concurrency limit of each fal account.", limit)?;
        let usable = accounts.iter().map(|a| (account(a), u32::from(a.usable)));
        gauges(e, "mediagen_account_usable", "1 when the account takes work (not locked or disabled).", usable)?;
        // Dollars as a float: exact to the micro-dollar below a billion dollars.
        let balance = accounts.iter().map(|a| (account(a), a.balance.dollars_f64()));
        gauges(e, "mediagen_account_balance_dollars", "Unexpired fal credit minus spend, per account.", balance)?;

        let periods = [("today", &live.today), ("month", &live.month)];
        let spend = periods.iter().flat_map(|&(period, spend)| {
            let Spend { user_charged, fal_list, fal_discounted, .. } = spend;
            [("user_charged", user_charged), ("fal_list", fal_list), ("fal_discounted", fal_discounted)]
                .map(|(kind, amount)| ([("period", period), ("kind", kind)], amount.dollars_f64()))
        });
        gauges(
            e,
            "mediagen_spend_dollars",
            "Money of the jobs finished today and this month (UTC): users charged, fal at list price, fal after the volume discount.",
            spend,
        )?;
        let finished = periods.iter().map(|&(period, spend)| ([("period", period)], spend.jobs));
        gauges(e, "mediagen_finished_jobs", "Jobs finished today and this month (UTC).", finished)?;
        gauge(
            e,
            "mediagen_month_requests",
            "Requests sent to fal this month (volume-discount count).",
            live.month_requests,
        )?;
        gauge(
            e,
            "mediagen_month_discount_percent",
            "The volume discount the month's requests reach.",
            u32::from(live.month_tier.percent_off),
        )?;

        // prometheus-client has no summary type; a gauge family with a `quantile` label
        // reads the same in queries.
        let waits = live.recent_waits.iter().flat_map(|w| [("0.5", w.p50), ("0.95", w.p95), ("1", w.max)]);
        gauges(
            e,
            "mediagen_queue_wait_seconds",
            "Wait in our queue (enqueue to first claim) of the jobs enqueued in the last hour, by quantile.",
            waits.map(|(q, secs)| ([("quantile", q)], secs)),
        )?;
        gauge(
            e,
            "mediagen_queue_wait_jobs",
            "Jobs enqueued in the last hour whose wait is measured.",
            live.recent_waits.map_or(0, |w| w.jobs),
        )
    }
}

/// A process's own counters.
#[derive(Debug)]
struct CounterCollector(Vec<Counter>);

impl Collector for CounterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for counter in &self.0 {
            // The library names a counter's family without `_total` and appends it to the
            // sample, so `mediagen_accepted_total` stays the sample's name.
            let family = counter.name.strip_suffix("_total").unwrap_or(counter.name);
            let metric = encoder.encode_descriptor(family, counter.help, None, MetricType::Counter)?;
            ConstCounter::new(counter.value).encode(metric)?;
        }
        Ok(())
    }
}

/// The jobs this process ended, by model, account and outcome, as one counter family.
#[derive(Debug)]
struct OutcomeCollector(Vec<OutcomeCount>);

impl Collector for OutcomeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        let help = "Jobs this process ended, by model, account (none: ended before dispatch) and outcome.";
        let mut family = encoder.encode_descriptor("mediagen_job_outcomes", help, None, MetricType::Counter)?;
        for counted in &self.0 {
            let account = counted.account.as_ref().map_or("none", |a| a.as_str());
            let labels =
                [("model", counted.model.as_str()), ("account", account), ("outcome", counted.outcome.as_str())];
            ConstCounter::new(counted.count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A histogram's name, help line and where it is in a model's [`JobTimes`].
type HistogramFamily = (&'static str, &'static str, fn(&JobTimes) -> &Histogram);

/// The histograms as `prometheus-client` encodes a collector's metrics.
#[derive(Debug)]
struct JobTimeCollector(Vec<JobTimes>);

impl Collector for JobTimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let families: [HistogramFamily; 3] = [
            (
                "mediagen_job_wait_seconds",
                "Time in our queue, from enqueue to fal accepting the request, of the jobs this process finished.",
                |t| &t.wait,
            ),
            (
                "mediagen_fal_latency_seconds",
                "Time at fal, from its accepting the request to the result being ready.",
                |t| &t.fal,
            ),
            ("mediagen_job_seconds", "Time of the whole job, from enqueue to the result being ready.", |t| &t.total),
        ];
        for (name, help, histogram_of) in families {
            if self.0.is_empty() {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for times in &self.0 {
                let labels = [("model", times.model.as_str()), ("account", times.account.as_str())];
                let histogram = histogram_of(times);
                encode_histogram(family.encode_family(&labels)?, histogram)?;
            }
        }
        Ok(())
    }
}

fn encode_histogram(mut encoder: MetricEncoder<'_>, histogram: &Histogram) -> fmt::Result {
    type NoExemplars =
        std::collections::HashMap<usize, prometheus_client::metrics::exemplar::Exemplar<Vec<(String, String)>, f64>>;
    // The OpenMetrics encoder writes only the buckets it is given, and the format requires
    // the `+Inf` one.
    let mut buckets = histogram.buckets();
    buckets.push((f64::INFINITY, histogram.counts.last().copied().unwrap_or(0)));
    encoder.encode_histogram::<Vec<(String, String)>>(
        histogram.sum_secs,
        histogram.count(),
        &buckets,
        None::<&NoExemplars>,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone, Utc};
    use mediagen_domain::{AccountId, ModelId};

    #[test]
    fn job_times_are_histograms_per_model_and_account() {
        let enqueued = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut times = JobTimes::new(ModelId::new("fal-ai/nano-banana"), AccountId::new("main"));
        // 1.5 s in our queue, 3 s at fal; then 0.2 s and 40 s.
        let submitted = enqueued + TimeDelta::milliseconds(1_500);
        times.observe(enqueued, submitted, submitted + TimeDelta::seconds(3));
        let submitted = enqueued + TimeDelta::milliseconds(200);
        times.observe(enqueued, submitted, submitted + TimeDelta::seconds(40));
        let text = render_job_times(&[times]);
        let line = |l: &str| text.lines().any(|x| x == l);
        assert!(line("# TYPE mediagen_job_wait_seconds histogram"), "{text}");
        let labels = "model=\"fal-ai/nano-banana\",account=\"main\"";
        for expected in [
            format!("mediagen_job_wait_seconds_bucket{{le=\"0.5\",{labels}}} 1"),
            format!("mediagen_job_wait_seconds_bucket{{le=\"2.0\",{labels}}} 2"),
            format!("mediagen_job_wait_seconds_sum{{{labels}}} 1.7"),
            format!("mediagen_fal_latency_seconds_bucket{{le=\"5.0\",{labels}}} 1"),
            format!("mediagen_fal_latency_seconds_bucket{{le=\"30.0\",{labels}}} 1"),
            format!("mediagen_fal_latency_seconds_bucket{{le=\"60.0\",{labels}}} 2"),
            format!("mediagen_fal_latency_seconds_bucket{{le=\"+Inf\",{labels}}} 2"),
            format!("mediagen_job_seconds_count{{{labels}}} 2"),
        ] {
            assert!(line(&expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(render_job_times(&[]), "# EOF\n", "no families before the first job");
    }
}
