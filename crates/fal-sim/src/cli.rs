//! The command line, as a clap `Args` struct the app crate can mount as `mediagen fal-sim`.

use crate::SimError;
use crate::config::{AccountConfig, ModelSpec, SimConfig, UnknownModelPolicy};
use crate::faults::FaultScript;
use crate::money::Usd;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Command-line options of the simulator.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks any free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// One key of an account, with optional account settings (see `--help`).
    #[arg(
        long = "account",
        value_name = "SPEC",
        help = "One key of an account: NAME=KEY[,limit=N][,balance=USD][,lock_threshold=USD]. Repeat the flag \
                for more keys or accounts; flags naming the same account add keys to it (the limit and balance \
                belong to the account). Default limit 2; no balance = unlimited."
    )]
    pub accounts: Vec<AccountSpec>,

    /// Speed-up of every simulated duration (1 = real time, 100 = 100x faster).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub time_scale: f64,

    /// Fault script file (see `--help`).
    #[arg(
        long,
        value_name = "FILE",
        help = "Fault script: TOML with [[rule]] tables, or JSON {\"rules\": [...]} when the name ends in .json."
    )]
    pub faults: Option<PathBuf>,

    /// Seed of the random generator (service times, output seeds, fault rates).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Adds or overrides an endpoint of the model table (see `--help`).
    #[arg(
        long = "model",
        value_name = "SPEC",
        help = "Add or override an endpoint: ENDPOINT=KIND[,price=SPEC][,service=SPEC]; KIND is flux, \
                nano-banana, nano-banana-edit, llm, openrouter or tts; price like 0.04, 0.003/mp, 0.1/1kchars; \
                service like 2.5, 1..3 or exp:2 (simulated seconds)."
    )]
    pub models: Vec<ModelSpec>,

    /// What a submit to an endpoint missing from the model table gets.
    #[arg(long, value_enum, default_value = "reject")]
    pub unknown_models: UnknownModelPolicy,

    /// Largest accepted storage upload, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Do not charge for jobs that end in a 422 content-policy violation.
    #[arg(long)]
    pub no_charge_content_policy: bool,

    /// Cancelling an IN_PROGRESS job stops it at once, without charge (default: it runs on and is billed).
    #[arg(long)]
    pub abort_running_on_cancel: bool,

    /// Side in pixels of the generated PNG files (the output JSON still reports the requested size).
    #[arg(long, value_name = "PX", default_value_t = 64)]
    pub image_px: u32,

    /// Base URL to write into returned URLs instead of http://ADDR (e.g. behind a proxy).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

impl SimArgs {
    /// Builds the configuration: merges account flags and loads the fault script.
    ///
    /// # Errors
    /// `SimError::Config` for conflicting account flags or invalid values, `SimError::Faults`
    /// when the fault script cannot be read or parsed.
    pub fn into_config(self) -> Result<SimConfig, SimError> {
        let faults = match &self.faults {
            Some(path) => FaultScript::load(path)?,
            None => FaultScript::default(),
        };
        let mut config = SimConfig {
            listen: self.listen,
            public_url: self.public_url,
            accounts: merge_accounts(&self.accounts).map_err(SimError::Config)?,
            time_scale: self.time_scale,
            seed: self.seed,
            unknown_models: self.unknown_models,
            faults,
            max_upload_bytes: self.max_upload_bytes,
            charge_content_policy: !self.no_charge_content_policy,
            abort_running_on_cancel: self.abort_running_on_cancel,
            image_px: self.image_px.clamp(1, 1024),
            ..SimConfig::default()
        };
        for spec in &self.models {
            let row = spec.apply(config.models.iter().find(|m| m.endpoint == spec.endpoint));
            config = config.with_model(row);
        }
        config.validate().map_err(SimError::Config)?;
        Ok(config)
    }
}

/// One `--account` flag: a key of an account, optionally with the account's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSpec {
    /// Account name.
    pub name: String,
    /// The key this flag adds.
    pub key: String,
    /// Concurrency limit, if given.
    pub limit: Option<u32>,
    /// Starting balance, if given.
    pub balance: Option<Usd>,
    /// Lock threshold, if given.
    pub lock_threshold: Option<Usd>,
}

impl FromStr for AccountSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (name, key) = head
            .split_once('=')
            .filter(|(n, k)| !n.trim().is_empty() && !k.trim().is_empty())
            .ok_or_else(|| format!("expected NAME=KEY[,limit=N][,balance=USD], got {s:?}"))?;
        let mut spec = AccountSpec {
            name: name.trim().to_owned(),
            key: key.trim().to_owned(),
            limit: None,
            balance: None,
            lock_threshold: None,
        };
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("expected key=value, got {part:?}"))?;
            let usd = |v: &str| v.parse::<Usd>().map_err(|e| e.to_string());
            match k.trim() {
                "limit" => {
                    spec.limit = Some(v.trim().parse().map_err(|_| format!("limit must be a whole number, got {v:?}"))?)
                }
                "balance" => spec.balance = Some(usd(v)?),
                "lock_threshold" => spec.lock_threshold = Some(usd(v)?),
                other => return Err(format!("unknown account option {other:?} (limit, balance, lock_threshold)")),
            }
        }
        Ok(spec)
    }
}

/// Folds `--account` flags into accounts; flags for one account add keys, settings must agree.
///
/// # Errors
/// A message when two flags give one account different settings or one key names two accounts.
pub fn merge_accounts(specs: &[AccountSpec]) -> Result<Vec<AccountConfig>, String> {
    let mut accounts: Vec<(AccountConfig, bool)> = Vec::new();
    for spec in specs {
        let idx = match accounts.iter().position(|(a, _)| a.name == spec.name) {
            Some(i) => i,
            None => {
                accounts.push((
                    AccountConfig {
                        name: spec.name.clone(),
                        keys: Vec::new(),
                        limit: 2,
                        balance: None,
                        lock_threshold: Usd::ZERO,
                        admin_keys: Vec::new(),
                    },
                    false,
                ));
                accounts.len() - 1
            }
        };
        if let Some((other, _)) = accounts.iter().find(|(a, _)| a.name != spec.name && a.keys.contains(&spec.key)) {
            return Err(format!("key of account {:?} is already used by account {:?}", spec.name, other.name));
        }
        let (account, limit_set) = &mut accounts[idx];
        if let Some(limit) = spec.limit {
            if *limit_set && account.limit != limit {
                return Err(format!("account {:?} is given two limits: {} and {limit}", spec.name, account.limit));
            }
            account.limit = limit;
            *limit_set = true;
        }
        if let Some(balance) = spec.balance {
            if account.balance.is_some_and(|b| b != balance) {
                return Err(format!("account {:?} is given two balances", spec.name));
            }
            account.balance = Some(balance);
        }
        if let Some(threshold) = spec.lock_threshold {
            account.lock_threshold = threshold;
        }
        if !account.keys.contains(&spec.key) {
            account.keys.push(spec.key.clone());
        }
    }
    Ok(accounts.into_iter().map(|(a, _)| a).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn account_flags_merge() {
        let cli = Cli::try_parse_from([
            "fal-sim",
            "--account",
            "main=k1,limit=3,balance=10",
            "--account",
            "main=k2",
            "--account",
            "spare=k3,limit=1",
            "--time-scale",
            "50",
        ])
        .unwrap();
        let config = cli.sim.into_config().unwrap();
        assert_eq!(config.accounts.len(), 2);
        assert_eq!(config.accounts[0].keys, ["k1", "k2"]);
        assert_eq!(config.accounts[0].limit, 3);
        assert_eq!(config.accounts[0].balance, Some(Usd::from_micros(10_000_000)));
        assert_eq!(config.accounts[1].limit, 1);
        assert_eq!(config.accounts[1].balance, None);
        assert!((config.time_scale - 50.0).abs() < f64::EPSILON);
    }

    #[test]
    fn conflicts_are_errors() {
        let specs = ["a=k1,limit=2", "a=k2,limit=3"].map(|s| s.parse::<AccountSpec>().unwrap());
        assert!(merge_accounts(&specs).is_err());
        let specs = ["a=k1", "b=k1"].map(|s| s.parse::<AccountSpec>().unwrap());
        assert!(merge_accounts(&specs).is_err());
        assert!("a".parse::<AccountSpec>().is_err());
        assert!("a=k,limit=x".parse::<AccountSpec>().is_err());
        assert!("a=k,colour=red".parse::<AccountSpec>().is_err());
        assert!(Cli::try_parse_from(["fal-sim", "--time-scale", "0"]).unwrap().sim.into_config().is_err());
    }

    #[test]
    fn model_flag_overrides() {
        let cli = Cli::try_parse_from(["fal-sim", "--model", "fal-ai/flux/schnell=flux,service=0.5"]).unwrap();
        let config = cli.sim.into_config().unwrap();
        let schnell: Vec<_> = config.models.iter().filter(|m| m.endpoint == "fal-ai/flux/schnell").collect();
        assert_eq!(schnell.len(), 1);
        assert_eq!(schnell[0].service, crate::config::ServiceTime::Fixed(0.5));
        assert_eq!(schnell[0].price, crate::config::Price::PerMegapixel(Usd::from_micros(3_000)), "price kept");
    }
}
