//! The live counters in Prometheus' text exposition format (version 0.0.4).

use mediagen_domain::Money;
use mediagen_domain::insights::{Histogram, JobTimes, Live, Metrics, Spend};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Write;

pub use mediagen_domain::insights::Counter;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Dollars as a plain decimal number, exact to the micro-dollar.
fn dollars(money: Money) -> String {
    money.plain_exact()
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders `live` and `counters`.
pub fn render(live: &Live, counters: &[Counter]) -> String {
    let mut out = String::new();
    header(&mut out, "mediagen_jobs", "gauge", "Jobs stored, by current state.");
    for (state, n) in live.jobs.by_name() {
        let _ = writeln!(out, "mediagen_jobs{{state=\"{state}\"}} {n}");
    }
    header(&mut out, "mediagen_queue_length", "gauge", "Jobs waiting in our queue.");
    let _ = writeln!(out, "mediagen_queue_length {}", live.jobs.queued);

    header(&mut out, "mediagen_account_in_flight", "gauge", "Jobs in flight on each fal account.");
    for a in &live.accounts {
        let _ = writeln!(out, "mediagen_account_in_flight{{account=\"{}\"}} {}", label(a.id.as_str()), a.in_flight);
    }
    header(&mut out, "mediagen_account_limit", "gauge", "Concurrency limit of each fal account.");
    for a in &live.accounts {
        let _ = writeln!(out, "mediagen_account_limit{{account=\"{}\"}} {}", label(a.id.as_str()), a.limit);
    }
    header(&mut out, "mediagen_account_usable", "gauge", "1 when the account takes work (not locked or disabled).");
    for a in &live.accounts {
        let _ = writeln!(out, "mediagen_account_usable{{account=\"{}\"}} {}", label(a.id.as_str()), u8::from(a.usable));
    }
    header(&mut out, "mediagen_account_balance_dollars", "gauge", "Unexpired fal credit minus spend, per account.");
    for a in &live.accounts {
        let _ = writeln!(
            out,
            "mediagen_account_balance_dollars{{account=\"{}\"}} {}",
            label(a.id.as_str()),
            dollars(a.balance)
        );
    }

    header(
        &mut out,
        "mediagen_spend_dollars",
        "gauge",
        "Money of the jobs finished today and this month (UTC): users charged, fal at list price, fal after the volume discount.",
    );
    for (period, spend) in [("today", &live.today), ("month", &live.month)] {
        let Spend { user_charged, fal_list, fal_discounted, .. } = spend;
        for (kind, amount) in
            [("user_charged", user_charged), ("fal_list", fal_list), ("fal_discounted", fal_discounted)]
        {
            let _ = writeln!(out, "mediagen_spend_dollars{{period=\"{period}\",kind=\"{kind}\"}} {}", dollars(*amount));
        }
    }
    header(&mut out, "mediagen_finished_jobs", "gauge", "Jobs finished today and this month (UTC).");
    for (period, spend) in [("today", &live.today), ("month", &live.month)] {
        let _ = writeln!(out, "mediagen_finished_jobs{{period=\"{period}\"}} {}", spend.jobs);
    }
    header(&mut out, "mediagen_month_requests", "gauge", "Requests sent to fal this month (volume-discount count).");
    let _ = writeln!(out, "mediagen_month_requests {}", live.month_requests);
    header(&mut out, "mediagen_month_discount_percent", "gauge", "The volume discount the month's requests reach.");
    let _ = writeln!(out, "mediagen_month_discount_percent {}", live.month_tier.percent_off);

    header(
        &mut out,
        "mediagen_queue_wait_seconds",
        "gauge",
        "Wait in our queue (enqueue to first claim) of the jobs enqueued in the last hour, by quantile.",
    );
    if let Some(w) = &live.recent_waits {
        for (q, v) in [("0.5", w.p50), ("0.95", w.p95), ("1", w.max)] {
            let _ = writeln!(out, "mediagen_queue_wait_seconds{{quantile=\"{q}\"}} {v}");
        }
    }
    header(&mut out, "mediagen_queue_wait_jobs", "gauge", "Jobs enqueued in the last hour whose wait is measured.");
    let _ = writeln!(out, "mediagen_queue_wait_jobs {}", live.recent_waits.map_or(0, |w| w.jobs));
    for counter in counters {
        header(&mut out, counter.name, "counter", counter.help);
        let _ = writeln!(out, "{} {}", counter.name, counter.value);
    }
    out
}

/// Everything the metrics endpoint exports: [`render`] of the live counters and this
/// process's counters, then [`render_job_times`].
pub fn render_metrics(metrics: &Metrics) -> String {
    let mut out = render(&metrics.live, &metrics.counters);
    out.push_str(&render_job_times(&metrics.job_times));
    out
}

/// The job-time histograms (`mediagen_job_wait_seconds`, `mediagen_fal_latency_seconds`,
/// `mediagen_job_seconds`), labelled by model and account, encoded by `prometheus-client`.
pub fn render_job_times(times: &[JobTimes]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(JobTimeCollector(times.to_vec())));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// A histogram's name, help line and where it is in a model's [`JobTimes`].
type HistogramFamily = (&'static str, &'static str, fn(&JobTimes) -> &Histogram);

/// The histograms as `prometheus-client` encodes a collector's metrics.
#[derive(Debug)]
struct JobTimeCollector(Vec<JobTimes>);

impl Collector for JobTimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
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

fn encode_histogram(mut encoder: MetricEncoder<'_>, histogram: &Histogram) -> Result<(), std::fmt::Error> {
    type NoExemplars =
        std::collections::HashMap<usize, prometheus_client::metrics::exemplar::Exemplar<Vec<(String, String)>, f64>>;
    encoder.encode_histogram::<Vec<(String, String)>>(
        histogram.sum_secs,
        histogram.count(),
        &histogram.buckets(),
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
            format!("mediagen_job_wait_seconds_bucket{{{labels},le=\"0.5\"}} 1"),
            format!("mediagen_job_wait_seconds_bucket{{{labels},le=\"2\"}} 2"),
            format!("mediagen_job_wait_seconds_sum{{{labels}}} 1.7"),
            format!("mediagen_fal_latency_seconds_bucket{{{labels},le=\"5\"}} 1"),
            format!("mediagen_fal_latency_seconds_bucket{{{labels},le=\"30\"}} 1"),
            format!("mediagen_fal_latency_seconds_bucket{{{labels},le=\"60\"}} 2"),
            format!("mediagen_fal_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 2"),
            format!("mediagen_job_seconds_count{{{labels}}} 2"),
        ] {
            assert!(line(&expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(render_job_times(&[]), "", "no families before the first job");
    }
}
