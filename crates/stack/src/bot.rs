//! The real bot on [`Parts`]: in-process ([`Stack`]) or as the binary ([`BotProcess`]).

use crate::parts::{Parts, StackOptions};
use crate::workspace;
use anyhow::{Context, bail};
use mediagen::wiring::Listeners;
use mediagen_telegram_fake::FakeTelegram;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopping bot may take before the fake Bot API is shut down under it: the
/// engine ends its loops at once, the Telegram loop only when its long poll is answered.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// How long it may take after that.
const STOP_WAIT_AFTER_FAKE: Duration = Duration::from_secs(15);

/// The bot's task: `mediagen::wiring::run_on` in this process. Dropping it aborts it.
struct Bot {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Bot {
    /// Loads the settings of `parts` and starts the bot on them.
    fn start(parts: &Parts) -> anyhow::Result<Bot> {
        let settings = parts.settings()?;
        let metrics = match parts.take_metrics_listener() {
            None => None,
            Some(socket) => {
                socket.set_nonblocking(true)?;
                Some(tokio::net::TcpListener::from_std(socket).context("the bot's metrics listener")?)
            }
        };
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(mediagen::wiring::run_on(settings, Listeners { metrics }, shutdown));
        Ok(Bot { stop, task: Some(task) })
    }

    fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Signals shutdown and waits as long as it takes.
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else { return Ok(()) };
        match task.await {
            Ok(result) => result,
            Err(join) => bail!("the bot task panicked: {join}"),
        }
    }

    /// Signals shutdown and waits; if the bot is still in a long poll after [`STOP_WAIT`],
    /// shuts `telegram` down, which answers it at once.
    async fn stop_then_close(mut self, telegram: &FakeTelegram) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else { return Ok(()) };
        let joined = match tokio::time::timeout(STOP_WAIT, &mut task).await {
            Ok(joined) => Ok(joined),
            Err(_) => {
                telegram.shutdown().await;
                tokio::time::timeout(STOP_WAIT_AFTER_FAKE, &mut task).await
            }
        };
        match joined {
            Ok(Ok(result)) => result.context("the bot stopped with an error"),
            Ok(Err(join)) => bail!("the bot task panicked: {join}"),
            Err(_) => {
                task.abort();
                bail!(
                    "the bot did not stop within {} s of the shutdown signal",
                    (STOP_WAIT + STOP_WAIT_AFTER_FAKE).as_secs()
                )
            }
        }
    }

    /// Waits for the task to end by itself (a start-up error) and says why.
    async fn failure(mut self) -> anyhow::Error {
        let Some(task) = self.task.take() else { return anyhow::anyhow!("the bot is not running") };
        match task.await {
            Ok(Ok(())) => anyhow::anyhow!("the bot stopped by itself"),
            Ok(Err(error)) => error.context("the bot could not start"),
            Err(join) => anyhow::anyhow!("the bot task panicked: {join}"),
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A running stack: the real bot (configuration, storage, fal adapter, engine, Telegram
/// adapter) in a task of this process, on [`Parts`] of its own, whose fields it derefs to
/// (`stack.telegram`, `stack.fal`, `stack.db`). Dropping it stops the bot and the fakes and
/// removes the database.
pub struct Stack {
    // First: the bot is stopped before the parts under it go.
    bot: Option<Bot>,
    parts: Parts,
}

impl std::ops::Deref for Stack {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl Stack {
    /// Starts everything with the shipped configuration pointed at the local parts.
    ///
    /// # Panics
    /// When a part cannot start: a test cannot run without it.
    pub async fn start(options: StackOptions) -> Stack {
        Stack::try_start(options).await.expect("start the stack")
    }

    /// [`Stack::start`] that says what failed instead of panicking.
    ///
    /// # Errors
    /// When a part cannot start or the configuration does not load.
    pub async fn try_start(options: StackOptions) -> anyhow::Result<Stack> {
        Stack::launch(Parts::try_start(options).await?)
    }

    /// Starts the bot on parts already running (after, say, recording purchases in the
    /// database or adding users to the fake Bot API). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the configuration does not load. The bot's own start-up errors end its task:
    /// see [`Stack::is_finished`] and [`Stack::failure`].
    pub fn launch(parts: Parts) -> anyhow::Result<Stack> {
        let bot = Bot::start(&parts)?;
        Ok(Stack { bot: Some(bot), parts })
    }

    /// Stops the bot (gracefully) and starts it again with another `DATABASE_URL`; the
    /// fakes and the database stay as they are.
    ///
    /// # Panics
    /// When the bot fails to stop cleanly or to start again.
    pub async fn restart_with_database_url(mut self, url: String) -> Stack {
        let bot = self.bot.take().expect("running");
        bot.stop().await.expect("the bot stopped cleanly");
        self.parts.set_var("DATABASE_URL", url);
        self.bot = Some(Bot::start(&self.parts).expect("restart the bot"));
        self
    }

    /// Whether the bot's task has ended (it should run until stopped).
    pub fn is_finished(&self) -> bool {
        self.bot.as_ref().is_none_or(Bot::is_finished)
    }

    /// Waits for the bot's task to end by itself (a start-up error) and says why.
    pub async fn failure(&mut self) -> anyhow::Error {
        match self.bot.take() {
            Some(bot) => bot.failure().await,
            None => anyhow::anyhow!("the bot is not running"),
        }
    }

    /// Stops the bot, keeping the parts running; shuts the fake Bot API down under it
    /// if it is still in a long poll after a few seconds.
    ///
    /// # Errors
    /// What the bot returned, or a panic or a hang at shutdown.
    pub async fn stop_bot(&mut self) -> anyhow::Result<()> {
        match self.bot.take() {
            Some(bot) => bot.stop_then_close(&self.parts.telegram).await,
            None => Ok(()),
        }
    }

    /// Stops the bot and waits for it, returning what it returned; then drops the rest.
    ///
    /// # Errors
    /// What the bot returned, or a panic or a hang at shutdown.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_bot().await
    }

    /// The parts, the bot stopped first if it still runs (aborted, without waiting).
    pub fn into_parts(self) -> Parts {
        let Stack { bot, parts } = self;
        drop(bot);
        parts
    }
}

/// The `mediagen` binary `just test` builds before the tests (`cargo build -p mediagen`).
///
/// # Panics
/// When it is missing, saying how to build it.
pub fn bot_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_absolute() { dir } else { workspace().join(dir) })
        .unwrap_or_else(|| workspace().join("target"));
    let binary = target.join("debug").join("mediagen");
    assert!(
        binary.is_file(),
        "the bot binary {} is missing: run `cargo build -p mediagen` first (`just test` does)",
        binary.display()
    );
    binary
}

/// The real bot binary running `mediagen run` against [`Parts`], its log in the scratch
/// directory. Dropping it kills it.
pub struct BotProcess {
    child: tokio::process::Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl BotProcess {
    /// Starts `mediagen run` with the parts' environment plus `extra` variables.
    ///
    /// # Panics
    /// When the binary is missing or cannot start.
    pub fn spawn(parts: &Parts, extra: &[(&str, &str)], name: &str) -> BotProcess {
        let (mut command, log) = BotProcess::command(parts, bot_binary(), name);
        command.arg("run").envs(extra.iter().map(|(k, v)| (*k, *v)));
        let child = command.spawn().expect("start the bot binary");
        BotProcess { child, log }
    }

    /// Starts `mediagen run` as a container would run it after a restart: PID 1 of a fresh
    /// PID namespace, under the host name `host`. Two such starts have the same host name
    /// and the same pid, as a restarted container does. Needs root (`unshare`).
    ///
    /// # Panics
    /// When the binary is missing or `unshare` cannot start.
    pub fn spawn_as_container(parts: &Parts, host: &str, name: &str) -> BotProcess {
        let (mut command, log) = BotProcess::command(parts, PathBuf::from("unshare"), name);
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(bot_binary())
            .arg("run")
            .env("HOSTNAME", host);
        let child = command.spawn().expect("start the bot binary under unshare");
        BotProcess { child, log }
    }

    /// `program` with the parts' environment only, its stderr in `<scratch>/<name>.log`.
    /// The child binds the metrics address itself, so the socket held for it is let go.
    fn command(parts: &Parts, program: PathBuf, name: &str) -> (tokio::process::Command, PathBuf) {
        drop(parts.take_metrics_listener());
        let log = parts.scratch().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("bot log file");
        let mut command = tokio::process::Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(parts.child_env())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        (command, log)
    }

    /// The process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// `kill -9`: no grace, no cleanup; waits until it is gone.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL the bot");
        let _ = self.child.wait().await;
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of its log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
