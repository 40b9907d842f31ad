//! The bench's `--smoke` mode, in-process: tiny workloads through both bots. Asserts
//! correctness only (every job finished, no account above its limit, every figure in the
//! JSON), never a timing.

use mediagen_bench::{DEFAULT_OVERHANG, Options, run};
use serde_json::Value;

#[test]
fn smoke_run_finishes_every_job_within_limits_and_reports_every_figure() {
    let out_dir = std::env::temp_dir().join(format!("mediagen-bench-smoke-{}", std::process::id()));
    let options = Options {
        smoke: true,
        out_dir: out_dir.clone(),
        seed: 7,
        probe_exe: env!("CARGO_BIN_EXE_mediagen-bench").into(),
        only: Vec::new(),
        overhang: DEFAULT_OVERHANG,
    };
    let results = run(&options).expect("the smoke bench runs");

    assert_eq!(results.workloads.len(), 3, "day, burst and heavy");
    for workload in &results.workloads {
        for strategy in &workload.strategies {
            let at = format!("{}/{}", workload.key, strategy.strategy);
            assert_eq!(strategy.jobs, workload.jobs, "{at}: every request counted");
            assert_eq!(strategy.succeeded, strategy.jobs, "{at}: every job delivered");
            assert_eq!(strategy.unfinished, 0, "{at}");
            assert!(!strategy.accounts.is_empty(), "{at}: fal's accounts were read");
            for account in &strategy.accounts {
                assert!(
                    account.max_in_progress <= account.limit,
                    "{at}: {} ran {} at once, limit {}",
                    account.name,
                    account.max_in_progress,
                    account.limit
                );
            }
        }
    }

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).expect("results.json written"))
            .expect("results.json is JSON");
    let strategy_figures = [
        "makespan_s",
        "lower_bound_s",
        "makespan_over_bound",
        "backlog_s",
        "utilization_during_backlog",
        "wait",
        "wait_real_ms",
        "light_wait",
        "jain_fairness",
        "accounts",
        "cpu_ms_per_job",
        "db_calls_per_job",
        "db_calls",
    ];
    let workloads = json["workloads"].as_array().expect("workloads");
    for workload in workloads {
        for strategy in workload["strategies"].as_array().expect("strategies") {
            for figure in strategy_figures {
                assert!(
                    strategy.get(figure).is_some(),
                    "{figure} missing in {}/{}",
                    workload["key"],
                    strategy["strategy"]
                );
            }
            for quantile in ["p50", "p95", "max"] {
                assert!(strategy["wait"][quantile].is_number(), "wait {quantile}");
                assert!(strategy["light_wait"][quantile].is_number(), "light wait {quantile}");
            }
            assert!(strategy["cpu_ms_per_job"].as_f64().is_some_and(|cpu| cpu > 0.0), "CPU was measured");
            let ours = strategy["strategy"].as_str().is_some_and(|s| s.starts_with("mediagen"));
            assert_eq!(strategy["db_calls_per_job"].is_number(), ours, "database calls counted for mediagen only");
        }
    }
    let burst = workloads.iter().find(|w| w["key"] == "burst").expect("the burst ran");
    for strategy in burst["strategies"].as_array().expect("strategies") {
        assert!(strategy["utilization_during_backlog"].is_number(), "the burst has a backlog");
    }
    for figure in ["peak_rss_mib", "rss_mib", "queued_at_measure", "intake_per_sec"] {
        assert!(json["memory"][figure].is_number(), "memory.{figure}");
    }
    let claims = json["claims"].as_array().expect("claims");
    let runs: Vec<(u64, u64)> =
        claims.iter().filter_map(|c| Some((c["claimers"].as_u64()?, c["batch"].as_u64()?))).collect();
    assert_eq!(runs, [(1, 16), (4, 16), (1, 64)]);
    assert!(claims.iter().all(|c| c["jobs_per_sec"].as_f64().is_some_and(|x| x > 0.0)));
    assert!(json["targets"].as_array().is_some_and(|t| t.len() >= 7), "every target checked");
    assert!(json["chart"]["panels"].as_array().is_some_and(|p| p.len() == 2), "chart legend");
    let png = std::fs::read(out_dir.join("burst.png")).expect("burst.png written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG file");
    for csv in ["day-baseline", "day-mediagen", "burst-baseline", "burst-mediagen", "heavy-mediagen-nocap"] {
        assert!(out_dir.join("jobs").join(format!("{csv}.csv")).is_file(), "{csv}.csv");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
