//! The operator's files in `deploy/` against the code they describe: the systemd unit's
//! directives (and `systemd-analyze verify` where installed), the installed layout starting
//! the real binary, and every metric name the Grafana dashboard and the Prometheus rules
//! query against what `/metrics` really exports (and `promtool` where installed).
//!
//! The exported names come from the exporter itself, not from a list kept here, so a renamed
//! metric breaks this test instead of a dashboard in production. No database server needed.

use chrono::{TimeDelta, TimeZone, Utc};
use mediagen::settings::Settings;
use mediagen_domain::insights::{JobOutcome, JobTimes, OutcomeCount};
use mediagen_domain::planner::WaitStats;
use mediagen_domain::{AccountId, ModelId};
use mediagen_engine::{Engine, EngineConfig, Ports};
use mediagen_memory::MemoryStore;
use mediagen_ports::{AccountStore, MockGeneration, MockMessaging, SystemClock};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The shipped settings, read the way the binary reads them (no operator file, no variables).
fn shipped_settings() -> Settings {
    Settings::load(&repo(), None, &HashMap::new()).expect("config/default.toml loads")
}

/// A scratch directory of this test binary, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mediagen-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether `program` runs here (a missing one is skipped, saying so).
fn installed(program: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        eprintln!("{program} is not installed: its check is skipped");
    }
    found
}

// ---------------------------------------------------------------------------------------
// The systemd unit.

/// A unit file: each section's assignments in order (a key may repeat).
struct Unit(BTreeMap<String, Vec<(String, String)>>);

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut section = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            assert!(!line.ends_with('\\'), "line {}: continuation lines are not read here", n + 1);
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.to_owned());
                sections.entry(name.to_owned()).or_default();
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("line {}: not Key=Value: {line}", n + 1));
            let section = section.as_ref().unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
            sections.get_mut(section).unwrap().push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Unit(sections)
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.0.get(section).into_iter().flatten().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The value in force: the last assignment, as systemd reads a single-valued key.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    fn service(&self, key: &str) -> &str {
        self.get("Service", key).unwrap_or_else(|| panic!("[Service] has no {key}="))
    }

    /// `Environment=` assignments (unquoted, as the shipped unit writes them).
    fn environment(&self) -> HashMap<String, String> {
        let assignments = self.all("Service", "Environment").into_iter().flat_map(str::split_whitespace);
        assignments
            .map(|a| {
                let (name, value) = a.split_once('=').unwrap_or_else(|| panic!("Environment={a} is not NAME=value"));
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }
}

/// A systemd time span (`90`, `90s`, `1min 30s`, `500ms`) in milliseconds.
fn timespan_ms(text: &str) -> u64 {
    text.split_whitespace()
        .map(|part| {
            let digits = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
            let number: u64 = part[..digits].parse().unwrap_or_else(|_| panic!("{text:?} is not a time span"));
            let unit = match &part[digits..] {
                "" | "s" | "sec" | "second" | "seconds" => 1000,
                "ms" | "msec" => 1,
                "m" | "min" | "minute" | "minutes" => 60_000,
                "h" | "hr" | "hour" | "hours" => 3_600_000,
                other => panic!("{other:?} in {text:?} is not a unit read here"),
            };
            number * unit
        })
        .sum()
}

fn shipped_unit() -> Unit {
    Unit::parse(&read("deploy/mediagen.service"))
}

/// After the grace the engine still sends its last progress edits and the front end confirms
/// the handled updates to Telegram; this much room is left for that before the SIGKILL.
const STOP_MARGIN_MS: u64 = 30_000;

#[test]
fn the_unit_runs_the_bot_hardened_as_its_own_user() {
    let unit = shipped_unit();
    let service = |key| unit.service(key);

    let own_user = unit.get("Service", "DynamicUser") == Some("yes")
        || unit.get("Service", "User").is_some_and(|user| !user.is_empty() && user != "root" && user != "0");
    assert!(own_user, "the bot runs as its own user (DynamicUser=yes or a User= that is not root)");

    assert_eq!(service("StateDirectory"), "mediagen");
    let state = format!("/var/lib/{}", service("StateDirectory"));
    assert_eq!(service("WorkingDirectory"), state, "the default SQLite file would land in the state directory");
    assert_eq!(unit.all("Service", "EnvironmentFile"), ["/etc/mediagen/env"], "secrets from one file, required");
    assert_eq!(service("ExecStart"), "/usr/local/bin/mediagen run");
    assert_eq!(service("Restart"), "on-failure");
    assert_eq!(service("KillSignal"), "SIGTERM", "main.rs stops gracefully on SIGTERM");

    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(unit.get("Service", key), Some(value), "{key}={value}");
    }

    // Hardening must not cut the bot off: it calls Telegram and fal over IPv4 and IPv6.
    let families: Vec<&str> =
        unit.all("Service", "RestrictAddressFamilies").into_iter().flat_map(str::split_whitespace).collect();
    for family in ["AF_INET", "AF_INET6"] {
        assert!(families.contains(&family), "RestrictAddressFamilies allows {family}: {families:?}");
    }
    assert_ne!(unit.get("Service", "PrivateNetwork"), Some("yes"), "the bot needs the network");
    assert!(unit.get("Service", "IPAddressDeny").is_none(), "the bot needs to reach the internet");
    assert!(unit.all("Unit", "After").contains(&"network-online.target"));
    assert!(unit.all("Unit", "Wants").contains(&"network-online.target"));
    assert_eq!(unit.get("Install", "WantedBy"), Some("multi-user.target"));

    let environment = unit.environment();
    let url = &environment["DATABASE_URL"];
    let file = url.strip_prefix("sqlite://").expect("the unit's database is the SQLite file");
    let file = file.split('?').next().unwrap();
    assert!(file.starts_with(&format!("{state}/")), "{url} lies in the state directory {state}, the one writable path");
}

#[test]
fn the_unit_waits_longer_than_the_shutdown_grace() {
    let grace_ms = shipped_settings().engine.shutdown_grace_secs * 1000;
    let timeout_ms = timespan_ms(shipped_unit().service("TimeoutStopSec"));
    assert!(
        timeout_ms >= grace_ms + STOP_MARGIN_MS,
        "TimeoutStopSec ({timeout_ms} ms) must exceed [engine] shutdown_grace_secs ({grace_ms} ms) by at least \
         {STOP_MARGIN_MS} ms, or systemd kills the bot while it is still finishing jobs"
    );
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if !installed("systemd-analyze") {
        return;
    }
    // `verify` checks that ExecStart's program exists, and /usr/local/bin/mediagen need not
    // exist here: the copy runs this build's binary instead, and is otherwise the same.
    let text = read("deploy/mediagen.service");
    let exec = format!("ExecStart=\"{}\" run", env!("CARGO_BIN_EXE_mediagen"));
    let copy: Vec<String> =
        text.lines().map(|l| if l.starts_with("ExecStart=") { exec.clone() } else { l.to_owned() }).collect();
    assert!(copy.contains(&exec), "the unit has an ExecStart= line");
    let dir = scratch("verify");
    let path = dir.join("mediagen.service");
    std::fs::write(&path, copy.join("\n") + "\n").unwrap();

    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "systemd-analyze verify failed:\n{said}");
    // An unknown key or a bad value is only a warning, with exit status 0.
    let warnings: Vec<&str> = said.lines().filter(|l| l.contains("mediagen.service")).collect();
    assert!(warnings.is_empty(), "systemd-analyze verify warns about the unit:\n{}", warnings.join("\n"));
}

/// The first fenced block of `language` in `markdown`.
fn fenced_block<'a>(markdown: &'a str, language: &str) -> &'a str {
    let start = markdown.find(&format!("```{language}\n")).unwrap_or_else(|| panic!("no ```{language} block"));
    let body = &markdown[start + language.len() + 4..];
    &body[..body.find("```").expect("the block ends")]
}

/// The install of deploy/README.md (the binary alone, no config/ next to it; the README's
/// operator file; the unit's DATABASE_URL in its state directory) in a scratch root: the
/// binary loads its compiled-in settings and the operator's file, creates the SQLite file
/// there and migrates it.
#[test]
fn the_installed_layout_starts_the_binary() {
    let unit = shipped_unit();
    let environment = unit.environment();
    let readme = read("deploy/README.md");
    assert!(!environment.contains_key("MEDIAGEN_HOME"), "the binary needs no config/ beside it");
    let operator_file = &environment["MEDIAGEN_CONFIG"];
    assert!(readme.contains(operator_file.as_str()), "the README says what goes in {operator_file}");
    let state = unit.service("WorkingDirectory");

    let root = scratch("layout");
    let settings_file = root.join("mediagen.toml");
    let example = fenced_block(&readme, "toml");
    std::fs::write(&settings_file, example).unwrap();
    let state_dir = root.join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let url = environment["DATABASE_URL"].replace(state, &state_dir.to_string_lossy());
    assert_ne!(url, environment["DATABASE_URL"], "DATABASE_URL names a file under {state}");

    let out = Command::new(env!("CARGO_BIN_EXE_mediagen"))
        .arg("migrate")
        .env_clear()
        .current_dir(&state_dir)
        .env("MEDIAGEN_CONFIG", &settings_file)
        .env("DATABASE_URL", &url)
        .output()
        .expect("the binary starts");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let created = state_dir.join("mediagen.sqlite").exists();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(out.status.success(), "mediagen migrate failed:\n{stdout}{stderr}");
    assert!(stdout.contains("migrations applied"), "{stdout}");
    assert!(created, "the SQLite file is created in the state directory");
    if example.contains("format = \"json\"") {
        for line in stderr.lines() {
            let parsed: Result<Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok_and(|v| v.is_object()), "[log] format = \"json\" logs JSON lines, not {line:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// What `/metrics` exports.

/// The sample names Prometheus stores from `/metrics`, each with its family, from the exporter
/// itself: the engine's metrics (the counters are named there) over an in-memory store with
/// one account, one measured wait and one finished job added so every family has samples,
/// rendered by the function the endpoint calls. Each `# TYPE` line gives its family's sample
/// names.
fn exported() -> &'static BTreeMap<String, String> {
    static EXPORTED: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let text = runtime.block_on(async {
            let settings = shipped_settings();
            let store = Arc::new(MemoryStore::new());
            let account = AccountId::new("main");
            store.upsert_account(&account, &["primary".to_owned()]).await.unwrap();
            let ports = Ports {
                generation: Arc::new(MockGeneration::new()),
                messaging: Arc::new(MockMessaging::new()),
                queue: store.clone(),
                users: store.clone(),
                accounts: store.clone(),
                prompt_cache: store.clone(),
                alerts: store.clone(),
                usage: store.clone(),
                reports: store,
                clock: Arc::new(SystemClock),
            };
            let engine = Engine::new(ports, EngineConfig::new(settings.catalog, settings.plans, "deploy-test"));
            let mut metrics = engine.insights.metrics().await.unwrap();
            metrics.live.recent_waits.get_or_insert(WaitStats { jobs: 1, p50: 1.0, p95: 2.0, max: 3.0 });
            if metrics.outcomes.is_empty() {
                metrics.outcomes.push(OutcomeCount {
                    model: ModelId::new("fal-ai/nano-banana"),
                    account: Some(account.clone()),
                    outcome: JobOutcome::Succeeded,
                    count: 1,
                });
            }
            if metrics.job_times.is_empty() {
                let mut times = JobTimes::new(ModelId::new("fal-ai/nano-banana"), account);
                let enqueued = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
                times.observe(enqueued, enqueued + TimeDelta::seconds(1), enqueued + TimeDelta::seconds(5));
                metrics.job_times.push(times);
            }
            mediagen_reports::prometheus::render_metrics(&metrics)
        });

        let mut names = BTreeMap::new();
        let mut kinds = BTreeSet::new();
        for line in text.lines() {
            let Some(declared) = line.strip_prefix("# TYPE ") else { continue };
            let (family, kind) = declared.split_once(' ').unwrap();
            let suffixes: &[&str] = match kind {
                "gauge" => &[""],
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                other => panic!("{family} is a {other}: teach this test the sample names of that type"),
            };
            for suffix in suffixes {
                let sample = format!("{family}{suffix}");
                let served = text.lines().any(|l| {
                    l.strip_prefix(sample.as_str()).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                });
                assert!(served, "no {sample} sample: the sample data must cover every family\n{text}");
                names.insert(sample, family.to_owned());
            }
            kinds.insert(kind);
        }
        assert_eq!(kinds, BTreeSet::from(["counter", "gauge", "histogram"]), "{text}");
        names
    })
}

/// The family of an exported sample name (the name itself when it is not exported).
fn family_of(name: &str) -> &str {
    exported().get(name).map_or(name, String::as_str)
}

// ---------------------------------------------------------------------------------------
// PromQL: the metric names an expression reads.

/// PromQL's aggregation operators: written `sum by (x) (…)` as well as `sum(…)`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// PromQL's functions.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "end",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Other keywords and literals that are not metric names.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

/// The end (exclusive) of the bracketed span opening at `start` (`{…}`, `[…]`, `(…)`),
/// skipping quoted text.
fn closing(chars: &[char], start: usize) -> Result<usize, String> {
    let (open, close) = (
        chars[start],
        match chars[start] {
            '{' => '}',
            '[' => ']',
            _ => ')',
        },
    );
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = quoted_end(chars, i)? - 1,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("{open} is never closed"))
}

/// The end (exclusive) of the string literal opening at `start`.
fn quoted_end(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 1,
            c if c == quote => return Ok(i + 1),
            _ => {}
        }
        i += 1;
    }
    Err("a string is never closed".to_owned())
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// The metric names `expr` selects: every identifier that is not a function, an aggregation,
/// a keyword, a label name (in `{…}` or a `by`/`on` list) or a Grafana variable (`$…`).
fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let next_non_space = |from: usize| (from..chars.len()).find(|&j| !chars[j].is_whitespace());
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = quoted_end(&chars, i)?;
        } else if c == '{' || c == '[' {
            i = closing(&chars, i)?;
        } else if c == '#' {
            i = (i..chars.len()).find(|&j| chars[j] == '\n').unwrap_or(chars.len());
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = closing(&chars, i)?;
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let next = next_non_space(i);
            if LABEL_LISTS.contains(&lower.as_str()) {
                if let Some(j) = next.filter(|&j| chars[j] == '(') {
                    i = closing(&chars, j)?;
                }
            } else if !KEYWORDS.contains(&lower.as_str()) && !AGGREGATIONS.contains(&word.as_str()) {
                if next.is_none_or(|j| chars[j] != '(') {
                    names.push(word);
                } else if !FUNCTIONS.contains(&word.as_str()) {
                    return Err(format!("{word}() is not a PromQL function"));
                }
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// What is wrong with `expr`'s metric names: unknown ones (outside `exported` and `extra`)
/// or none at all.
fn expr_problems(place: &str, expr: &str, extra: &[&str]) -> Vec<String> {
    match metric_names(expr) {
        Err(error) => vec![format!("{place}: {error} in {expr:?}")],
        Ok(names) if names.is_empty() => vec![format!("{place}: reads no metric: {expr:?}")],
        Ok(names) => names
            .into_iter()
            .filter(|name| !exported().contains_key(name) && !extra.contains(&name.as_str()))
            .map(|name| format!("{place}: {name} is not a metric mediagen exports"))
            .collect(),
    }
}

#[test]
fn promql_names_are_read_as_prometheus_reads_them() {
    let cases: &[(&str, &[&str])] = &[
        ("up{job=\"mediagen\"} == 0", &["up"]),
        (
            "histogram_quantile(0.95, sum by (le, model) (rate(mediagen_fal_latency_seconds_bucket{account=~\"$account\"}[$__rate_interval])))",
            &["mediagen_fal_latency_seconds_bucket"],
        ),
        (
            "max by (account) (a_in_flight) >= on (account) max by (account) (a_limit) and on (account) a_limit > 0",
            &["a_in_flight", "a_limit", "a_limit"],
        ),
        ("sum without (instance) (rate(x_total[5m] offset 1h)) / ignoring (kind) group_left y", &["x_total", "y"]),
        ("count(z{label=\"not_a_metric\", other=~'also {not} one'}) > bool 1e-3 # a comment", &["z"]),
        ("max(${metric_var}) > Inf", &[]),
    ];
    for (expr, expected) in cases {
        assert_eq!(metric_names(expr).unwrap(), *expected, "{expr}");
    }
    assert!(metric_names("rat(x[5m])").unwrap_err().contains("rat()"), "a misspelled function is caught");
    assert!(metric_names("sum(x{a=\"b\"").is_err(), "an unclosed matcher is caught");
}

#[test]
fn the_exporter_names_are_the_documented_ones() {
    let names = exported();
    for name in [
        "mediagen_queue_length",
        "mediagen_jobs",
        "mediagen_account_in_flight",
        "mediagen_account_limit",
        "mediagen_account_balance_dollars",
        "mediagen_spend_dollars",
        "mediagen_accepted_total",
        "mediagen_failed_total",
        "mediagen_job_seconds_bucket",
        "mediagen_fal_latency_seconds_count",
    ] {
        assert!(names.contains_key(name), "{name} is exported: {names:?}");
    }
    for name in ["mediagen_accepted", "mediagen_job_seconds", "mediagen_queue_length_total"] {
        assert!(!names.contains_key(name), "{name} is not a sample name: {names:?}");
    }
    assert_eq!(family_of("mediagen_job_seconds_bucket"), "mediagen_job_seconds");
    assert_eq!(family_of("mediagen_accepted_total"), "mediagen_accepted");
    assert_eq!(family_of("mediagen_queue_wait_jobs"), "mediagen_queue_wait_jobs");
}

// ---------------------------------------------------------------------------------------
// The Grafana dashboard.

/// Every string under the key `key` anywhere in `value`, with its JSON path.
fn strings_under<'a>(value: &'a Value, key: &str, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                if k == key
                    && let Some(text) = v.as_str()
                {
                    out.push((here.clone(), text));
                }
                strings_under(v, key, here, out);
            }
        }
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                strings_under(item, key, format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Every panel, rows' nested ones included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().into_iter().flatten().collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        out.push(panel);
    }
    out
}

/// What is wrong with a dashboard: it must parse, pick its Prometheus data source by a
/// variable, give every panel a query, query only exported metrics and show every family.
fn dashboard_problems(text: &str) -> Vec<String> {
    let dashboard: Value = match serde_json::from_str(text) {
        Ok(dashboard) => dashboard,
        Err(error) => return vec![format!("not JSON: {error}")],
    };
    let mut problems = Vec::new();
    if dashboard["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        problems.push(format!("schemaVersion {} is older than Grafana 9.4's 36", dashboard["schemaVersion"]));
    }
    let variables = dashboard["templating"]["list"].as_array().cloned().unwrap_or_default();
    let datasource = variables.iter().find(|v| v["type"] == "datasource" && v["query"] == "prometheus");
    let Some(datasource) = datasource.and_then(|v| v["name"].as_str()) else {
        return vec!["no Prometheus data source variable".to_owned()];
    };
    let picks = |value: &Value| {
        value["type"] == "prometheus"
            && (value["uid"] == format!("${datasource}") || value["uid"] == format!("${{{datasource}}}"))
    };

    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if !panel["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            problems.push(format!("panel {title:?}: a missing or repeated id"));
        }
        if panel["type"] == "row" {
            continue;
        }
        if !picks(&panel["datasource"]) {
            problems.push(format!("panel {title:?}: its data source is not ${datasource}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title:?}: no query"));
        }
        for target in &targets {
            let Some(expr) = target["expr"].as_str() else {
                problems.push(format!("panel {title:?}: a query without expr"));
                continue;
            };
            if !picks(&target["datasource"]) {
                problems.push(format!("panel {title:?}: a query's data source is not ${datasource}"));
            }
            problems.extend(expr_problems(&format!("panel {title:?}"), expr, &[]));
            used.extend(metric_names(expr).unwrap_or_default().iter().map(|n| family_of(n).to_owned()));
        }
    }
    // Every expr anywhere is checked, not only those where panels are expected to keep them.
    let mut exprs = Vec::new();
    strings_under(&dashboard, "expr", String::new(), &mut exprs);
    let in_panels: usize = panels(&dashboard).iter().map(|p| p["targets"].as_array().map_or(0, Vec::len)).sum();
    if exprs.len() != in_panels {
        problems.push(format!("{} exprs outside panel targets", exprs.len().saturating_sub(in_panels)));
        for (path, expr) in exprs {
            problems.extend(expr_problems(&path, expr, &[]));
        }
    }
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().unwrap_or("(unnamed)");
        let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).unwrap_or("");
        let place = format!("variable {name}");
        match query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
            Some(inner) => match inner.rsplit_once(',') {
                Some((selector, _label)) => problems.extend(expr_problems(&place, selector, &[])),
                None => problems.push(format!("{place}: label_values over every metric, not mediagen's")),
            },
            None => problems.push(format!("{place}: {query:?} is not a label_values() query")),
        }
    }
    let families: BTreeSet<&str> = exported().values().map(String::as_str).collect();
    for family in families {
        if !used.contains(family) {
            problems.push(format!("no panel shows {family}"));
        }
    }
    problems
}

#[test]
fn the_dashboard_queries_only_and_all_exported_metrics() {
    let problems = dashboard_problems(&read("deploy/grafana/mediagen.json"));
    assert!(problems.is_empty(), "deploy/grafana/mediagen.json:\n{}", problems.join("\n"));
}

#[test]
fn a_misspelled_metric_in_the_dashboard_is_caught() {
    let shipped = read("deploy/grafana/mediagen.json");
    for (right, wrong) in [
        ("mediagen_queue_length", "mediagen_queue_lenght"),
        ("mediagen_accepted_total", "mediagen_accepted"),
        ("mediagen_job_seconds_bucket", "mediagen_job_seconds"),
    ] {
        assert!(shipped.contains(right), "the dashboard uses {right}");
        let problems = dashboard_problems(&shipped.replace(right, wrong));
        assert!(problems.iter().any(|p| p.contains(&format!("{wrong} is not a metric"))), "{wrong}: {problems:?}");
    }
    let datasource = dashboard_problems(&shipped.replace("${datasource}", "prometheus"));
    assert!(datasource.iter().any(|p| p.contains("data source")), "{datasource:?}");
}

// ---------------------------------------------------------------------------------------
// The Prometheus rules: YAML, read by a small reader of the subset rule files use (no YAML
// crate in the workspace), which refuses what it does not understand.

#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Map(Vec<(String, Yaml)>),
    List(Vec<Yaml>),
    Text(String),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Yaml::Text(text) => Some(text),
            _ => None,
        }
    }

    fn list(&self) -> Option<&[Yaml]> {
        match self {
            Yaml::List(items) => Some(items),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Yaml::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

struct YamlReader<'a> {
    lines: Vec<&'a str>,
    at: usize,
}

fn parse_yaml(text: &str) -> Result<Yaml, String> {
    let mut reader = YamlReader { lines: text.lines().collect(), at: 0 };
    let Some((indent, _)) = reader.peek()? else { return Err("empty document".to_owned()) };
    let document = reader.block(indent)?;
    match reader.peek()? {
        None => Ok(document),
        Some((_, line)) => Err(format!("line {}: unexpected {line:?}", reader.at + 1)),
    }
}

impl<'a> YamlReader<'a> {
    /// The next line with content (its indentation and text), past blanks and comments.
    fn peek(&mut self) -> Result<Option<(usize, &'a str)>, String> {
        while let Some(line) = self.lines.get(self.at) {
            let content = line.trim_start_matches(' ');
            if content.starts_with('\t') {
                return Err(format!("line {}: a tab in the indentation", self.at + 1));
            }
            if content.trim().is_empty() || content.starts_with('#') {
                self.at += 1;
                continue;
            }
            return Ok(Some((line.len() - content.len(), content.trim_end())));
        }
        Ok(None)
    }

    fn block(&mut self, indent: usize) -> Result<Yaml, String> {
        match self.peek()? {
            Some((_, line)) if line == "-" || line.starts_with("- ") => self.list(indent),
            _ => self.map(indent, Vec::new()),
        }
    }

    fn map(&mut self, indent: usize, mut entries: Vec<(String, Yaml)>) -> Result<Yaml, String> {
        while let Some((at, line)) = self.peek()? {
            if at < indent {
                break;
            }
            let n = self.at + 1;
            if at > indent || line.starts_with('-') {
                return Err(format!("line {n}: unexpected {line:?} in a map indented {indent}"));
            }
            let (key, rest) = split_key(line).ok_or_else(|| format!("line {n}: not `key: value`: {line:?}"))?;
            if entries.iter().any(|(k, _)| k == key) {
                return Err(format!("line {n}: {key} twice"));
            }
            self.at += 1;
            let value = self.value(indent, rest)?;
            entries.push((key.to_owned(), value));
        }
        Ok(Yaml::Map(entries))
    }

    fn list(&mut self, indent: usize) -> Result<Yaml, String> {
        let mut items = Vec::new();
        while let Some((at, line)) = self.peek()? {
            if at < indent {
                break;
            }
            let n = self.at + 1;
            let item = match line.strip_prefix('-') {
                Some(item) if at == indent && (item.is_empty() || item.starts_with(' ')) => item.trim_start(),
                _ => return Err(format!("line {n}: unexpected {line:?} in a list indented {indent}")),
            };
            self.at += 1;
            let inner = at + (line.len() - item.len());
            items.push(if item.is_empty() {
                match self.peek()? {
                    Some((deeper, _)) if deeper > indent => self.block(deeper)?,
                    _ => Yaml::Text(String::new()),
                }
            } else if let Some((key, rest)) = split_key(item) {
                let value = self.value(inner, rest)?;
                self.map(inner, vec![(key.to_owned(), value)])?
            } else {
                Yaml::Text(scalar(item).map_err(|e| format!("line {n}: {e}"))?)
            });
        }
        Ok(Yaml::List(items))
    }

    /// The value after `key:` on a line indented `indent`.
    fn value(&mut self, indent: usize, rest: &str) -> Result<Yaml, String> {
        match rest {
            "" => match self.peek()? {
                Some((deeper, _)) if deeper > indent => self.block(deeper),
                _ => Ok(Yaml::Text(String::new())),
            },
            "|" | "|-" | ">" | ">-" => {
                let mut lines = Vec::new();
                while let Some(line) = self.lines.get(self.at) {
                    let content = line.trim_start_matches(' ');
                    if !content.trim().is_empty() && line.len() - content.len() <= indent {
                        break;
                    }
                    lines.push(line.trim());
                    self.at += 1;
                }
                while lines.last() == Some(&"") {
                    lines.pop();
                }
                Ok(Yaml::Text(lines.join(if rest.starts_with('>') { " " } else { "\n" })))
            }
            _ => scalar(rest).map(Yaml::Text).map_err(|e| format!("line {}: {e}", self.at)),
        }
    }
}

/// `key: value` or `key:`, with a plain key.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once(':')?;
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (plain && (rest.is_empty() || rest.starts_with(' '))).then(|| (key, rest.trim()))
}

/// A one-line scalar: double-quoted, single-quoted or plain.
fn scalar(text: &str) -> Result<String, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or_else(|| format!("text after a quoted string: {text:?}"))?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c @ ('"' | '\\' | '/')) => out.push(c),
                    other => return Err(format!("escape \\{other:?} not read here: {text:?}")),
                },
                '"' => return Err(format!("an unescaped quote inside {text:?}")),
                c => out.push(c),
            }
        }
        Ok(out)
    } else if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'').ok_or_else(|| format!("text after a quoted string: {text:?}"))?;
        Ok(inner.replace("''", "'"))
    } else if text.starts_with(['[', '{', '&', '*', '!', '|', '>', '%', '@', '`']) {
        Err(format!("YAML not read here: {text:?}"))
    } else {
        Ok(text.split(" #").next().unwrap_or(text).trim_end().to_owned())
    }
}

/// A Prometheus duration such as `15m` or `1h30m`, in seconds.
fn duration_secs(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let scale = match &rest[digits..digits + unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[digits + unit_len..];
    }
    Some(total)
}

/// The alert names and the metrics each must read.
const REQUIRED_ALERTS: &[(&str, &[&str])] = &[
    ("MediagenDown", &["up"]),
    ("MediagenQueueStuck", &["mediagen_queue_length", "mediagen_succeeded_total"]),
    ("MediagenAccountSaturated", &["mediagen_account_in_flight", "mediagen_account_limit"]),
    ("MediagenErrorRate", &["mediagen_failed_total", "mediagen_succeeded_total"]),
    ("MediagenBalanceLow", &["mediagen_account_balance_dollars"]),
];

/// What is wrong with a rule file: each rule must be an alert reading only exported metrics
/// (and `up`), pending for a while (`for`), with a severity and a summary.
fn rule_problems(text: &str) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut problems = Vec::new();
    let mut alerts = BTreeMap::new();
    let document = match parse_yaml(text) {
        Ok(document) => document,
        Err(error) => return (vec![format!("not read: {error}")], alerts),
    };
    let groups = document.get("groups").and_then(Yaml::list).unwrap_or_default();
    if groups.is_empty() {
        problems.push("no groups".to_owned());
    }
    for group in groups {
        let group_name = group.get("name").and_then(Yaml::text).unwrap_or("(unnamed)");
        let rules = group.get("rules").and_then(Yaml::list).unwrap_or_default();
        if rules.is_empty() {
            problems.push(format!("group {group_name}: no rules"));
        }
        for rule in rules {
            let Some(name) = rule.get("alert").and_then(Yaml::text) else {
                problems.push(format!("group {group_name}: a rule that is not an alert: {:?}", rule.keys()));
                continue;
            };
            let place = format!("alert {name}");
            for key in rule.keys() {
                if !["alert", "expr", "for", "keep_firing_for", "labels", "annotations"].contains(&key) {
                    problems.push(format!("{place}: unknown key {key}"));
                }
            }
            let expr = rule.get("expr").and_then(Yaml::text).unwrap_or("");
            problems.extend(expr_problems(&place, expr, &["up"]));
            let names = metric_names(expr).unwrap_or_default();
            if alerts.insert(name.to_owned(), names).is_some() {
                problems.push(format!("{place}: defined twice"));
            }
            match rule.get("for").and_then(Yaml::text) {
                None => problems.push(format!("{place}: no `for`")),
                Some(pending) if duration_secs(pending).is_none_or(|s| s == 0) => {
                    problems.push(format!("{place}: `for: {pending}` is not a positive duration"));
                }
                Some(_) => {}
            }
            let severity = rule.get("labels").and_then(|l| l.get("severity")).and_then(Yaml::text);
            if !severity.is_some_and(|s| ["critical", "warning", "info"].contains(&s)) {
                problems.push(format!("{place}: severity {severity:?} is not critical, warning or info"));
            }
            let summary = rule.get("annotations").and_then(|a| a.get("summary")).and_then(Yaml::text);
            if summary.is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{place}: no summary annotation"));
            }
        }
    }
    (problems, alerts)
}

#[test]
fn the_alert_rules_read_exported_metrics_and_say_what_fired() {
    let (problems, alerts) = rule_problems(&read("deploy/prometheus/alerts.yml"));
    assert!(problems.is_empty(), "deploy/prometheus/alerts.yml:\n{}", problems.join("\n"));
    for (alert, metrics) in REQUIRED_ALERTS {
        let read = alerts.get(*alert).unwrap_or_else(|| panic!("no {alert} alert: {:?}", alerts.keys()));
        for metric in *metrics {
            assert!(read.iter().any(|m| m == metric), "{alert} reads {metric}: {read:?}");
        }
    }
}

#[test]
fn broken_alert_rules_are_caught() {
    let shipped = read("deploy/prometheus/alerts.yml");
    let (problems, _) = rule_problems(&shipped.replace("mediagen_account_limit", "mediagen_account_limits"));
    assert!(
        problems.iter().any(|p| p.contains("alert MediagenAccountSaturated: mediagen_account_limits is not a metric")),
        "{problems:?}"
    );
    let broken = r#"
groups:
  - name: broken
    rules:
      - alert: NoFor
        expr: mediagen_queue_length > 0
        labels:
          severity: warning
        annotations:
          summary: "no for"
      - alert: NoSeverityNoSummary
        expr: |
          sum(rate(mediagen_accepted[5m])) > 0
        for: 5m
        labels:
          team: bots
        annotations:
          description: "no summary"
      - record: job:rate5m
        expr: sum(rate(mediagen_accepted_total[5m]))
"#;
    let (problems, _) = rule_problems(broken);
    for expected in [
        "alert NoFor: no `for`",
        "alert NoSeverityNoSummary: mediagen_accepted is not a metric",
        "alert NoSeverityNoSummary: severity None",
        "alert NoSeverityNoSummary: no summary annotation",
        "group broken: a rule that is not an alert",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected} in {problems:?}");
    }
    let (problems, _) = rule_problems("groups:\n  - name: x\n    rules: [ ]\n");
    assert!(problems.iter().any(|p| p.contains("not read here")), "flow style is refused: {problems:?}");
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    if !installed("promtool") {
        return;
    }
    let dir = repo().join("deploy/prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let out = Command::new("promtool").args(args).current_dir(&dir).output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
