//! Pre-approval planning of the local engine, off the controller's process (DESIGN §5: nothing
//! unapproved is evaluated).
//!
//! Planning SQL with DataFusion is not inert: the optimizer constant-folds expressions (and its
//! decorrelation rules call the expression simplifier too), and the estimate evaluates the
//! pushed-down filter on Parquet statistics. A spec such as
//! `select length(repeat(arrow_cast('x','LargeUtf8'), 100000000000))` would abort the process
//! on an allocation failure, `levenshtein(repeat('a',150000), repeat('b',150001))` would hold a
//! core for half a minute, and `lpad('x', 2147483647, 'y')` would grow it by gigabytes. None of
//! that may happen to the controller before a human approved the SQL, so the local engine plans
//! and estimates each new SQL in a child process: the same binary re-executed with the hidden
//! subcommand [`SUBCOMMAND`] (a JSON [`Request`] on stdin, one JSON [`Answer`] on stdout), under
//!
//! * `RLIMIT_DATA` = [`Budget::memory_bytes`]: heap, anonymous mappings and thread stacks (not
//!   the mapped executable, whose size differs between debug and release builds by hundreds of
//!   MiB, nor address space merely reserved; which is why this is not `RLIMIT_AS`), so an
//!   allocation past it fails and the child aborts;
//! * `RLIMIT_CPU` = [`Budget::cpu`] (SIGXCPU, then SIGKILL a second later);
//! * a wall-clock deadline of [`Budget::wall`], after which the parent kills it (also when the
//!   caller stops waiting), no core dumps, a lower scheduling priority (nice 10), an empty
//!   environment (no credentials) but `MALLOC_ARENA_MAX=2`, a current-thread runtime, and an
//!   answer read up to [`MAX_ANSWER_BYTES`].
//!
//! A child stopped by a limit, the deadline or any signal is a *permanent* plan error naming the
//! budget ("planning this query exceeded its memory/CPU budget … before approval; simplify it"):
//! the request fails (`PlanFailed`) or the generator is told, and the controller carries on. A
//! child that cannot be started, or answers something that is not an answer, is
//! [`EngineError::Unavailable`] (a deployment problem, not the SQL's: never shown to the model).
//!
//! Plan and estimate are made by one child run; the engine keeps the estimate for the
//! [`Engine::estimate`](super::Engine::estimate) call that follows (see `LocalEngine`).
//! Unit tests run inside the test harness, which has no such subcommand: there the engine plans
//! in process ([`Preflight::InProcess`], the default under `cfg(test)`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::EngineError;
use crate::spec::Estimate;
use crate::spec::quantity::format_duration;

/// The hidden subcommand the child runs (`sqlctl __preflight`); not a clap command, so it never
/// shows in `--help`.
pub const SUBCOMMAND: &str = "__preflight";

/// Version of the stdin/stdout protocol; a child speaking another one is not used.
pub const PROTOCOL: &str = "sqlctl-preflight/1";

/// Largest request the child reads (SQL is at most 100 kB; paths are short).
const MAX_REQUEST_BYTES: u64 = 4 << 20;

/// Largest answer the parent reads.
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Most stderr kept from a failed child (for the log and the failure's wording).
const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// Limits of one preflight child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `RLIMIT_DATA` of the child, bytes.
    pub memory_bytes: u64,
    /// `RLIMIT_CPU` of the child (whole seconds, at least 1).
    pub cpu: Duration,
    /// Wall-clock deadline.
    pub wall: Duration,
}

/// Default memory budget. Measured (debug build, TPC-H SF 0.01, a three-way join with filters,
/// aggregate and TopK): a plan and estimate runs within `RLIMIT_DATA` = 16 MiB, in about 80 ms
/// per child including the spawn; the same child needs `RLIMIT_AS` >= 300 MiB only to map the
/// 330 MB debug executable. 1 GiB leaves wide headroom for wide schemas and many files, while
/// `repeat(…, 100000000000)` and `lpad('x', 2147483647, …)` fail at once.
pub const DEFAULT_MEMORY_BYTES: u64 = 1 << 30;
/// Default CPU budget.
pub const DEFAULT_CPU: Duration = Duration::from_secs(10);
/// Default wall-clock budget.
pub const DEFAULT_WALL: Duration = Duration::from_secs(15);

impl Default for Budget {
    fn default() -> Self {
        Budget { memory_bytes: DEFAULT_MEMORY_BYTES, cpu: DEFAULT_CPU, wall: DEFAULT_WALL }
    }
}

impl Budget {
    fn cpu_secs(&self) -> u64 {
        self.cpu.as_secs_f64().ceil().max(1.0) as u64
    }

    /// What the failure message says about the budget.
    pub fn describe(&self) -> String {
        format!("{} MiB / {} s CPU, {} wall", self.memory_bytes >> 20, self.cpu_secs(), format_duration(self.wall))
    }
}

/// The program (and arguments) that answers the preflight protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl ChildCommand {
    /// `BINARY __preflight`: `binary` must be the sqlctl binary (benches and tools that embed the
    /// library pass `env!("CARGO_BIN_EXE_sqlctl")`).
    pub fn sqlctl(binary: impl Into<PathBuf>) -> Self {
        ChildCommand { program: binary.into(), args: vec![SUBCOMMAND.into()] }
    }

    /// This very binary: `/proc/self/exe` where it exists (it still names the running image
    /// after the file was replaced by an upgrade), else [`std::env::current_exe`].
    pub fn this_binary() -> Self {
        let proc = PathBuf::from("/proc/self/exe");
        let program =
            if proc.exists() { proc } else { std::env::current_exe().unwrap_or_else(|_| PathBuf::from("sqlctl")) };
        ChildCommand::sqlctl(program)
    }
}

/// Where the local engine plans SQL before approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preflight {
    /// In this process: only for the child itself and for unit tests.
    InProcess,
    /// In a child process under `budget`.
    Isolated { command: ChildCommand, budget: Budget },
}

impl Preflight {
    /// The default of a `LocalEngine`: isolated in this binary with the default budget, except
    /// in unit tests (`cfg(test)`), whose harness cannot answer the protocol.
    pub fn default_for_build() -> Self {
        if cfg!(test) {
            Preflight::InProcess
        } else {
            Preflight::Isolated { command: ChildCommand::this_binary(), budget: Budget::default() }
        }
    }
}

/// What the parent asks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Request {
    pub protocol: String,
    pub data_dir: PathBuf,
    pub database: String,
    pub sql: String,
}

/// Why a plan or estimate failed, as carried over the pipe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Failure {
    pub message: String,
    pub transient: bool,
    /// Set for [`EngineError::Unavailable`]: the setting to fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Transient(message) => Failure { message, transient: true, setting: None },
            EngineError::Permanent(message) => Failure { message, transient: false, setting: None },
            EngineError::Unavailable { setting, message } => {
                Failure { message, transient: true, setting: Some(setting) }
            }
        }
    }
}

impl From<Failure> for EngineError {
    fn from(f: Failure) -> Self {
        match f.setting {
            Some(setting) => EngineError::Unavailable { setting, message: f.message },
            None if f.transient => EngineError::Transient(f.message),
            None => EngineError::Permanent(f.message),
        }
    }
}

/// The error for a planner child that cannot be run or does not speak the protocol: nothing
/// is wrong with the SQL; the deployment is.
fn unavailable(command: &ChildCommand, message: String) -> EngineError {
    EngineError::Unavailable {
        setting: format!(
            "the planner child `{} {}` (it must be this sqlctl binary; a program embedding the library sets LocalEngine::with_preflight)",
            command.program.display(),
            command.args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        ),
        message,
    }
}

/// What the child answers: the plan's verdict and, when it planned, the estimate of that plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Answer {
    pub protocol: String,
    /// `None`: the SQL planned.
    pub plan: Option<Failure>,
    /// `None` when the plan failed.
    pub estimate: Option<Result<Estimate, Failure>>,
}

/// The child's side: reads a [`Request`] from stdin, plans and estimates in process on a
/// current-thread runtime with `answer` (the engine's own planner, see
/// [`crate::engine::preflight_child_main`]), writes the [`Answer`] to stdout. Exit 0 with an
/// answer; 2 when the request is not one (nothing is written then).
pub fn child_main<F, Fut>(answer: F) -> std::process::ExitCode
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_REQUEST_BYTES).read_to_end(&mut input) {
        eprintln!("sqlctl {SUBCOMMAND}: reading the request: {e}");
        return std::process::ExitCode::from(2);
    }
    let request: Request = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sqlctl {SUBCOMMAND}: not a preflight request: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if request.protocol != PROTOCOL {
        eprintln!("sqlctl {SUBCOMMAND}: protocol {:?}, this binary speaks {PROTOCOL}", request.protocol);
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(2).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sqlctl {SUBCOMMAND}: starting the runtime: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    let answer = runtime.block_on(answer(request));
    let mut out = std::io::stdout().lock();
    if serde_json::to_writer(&mut out, &answer).is_err() || out.flush().is_err() {
        return std::process::ExitCode::from(3);
    }
    std::process::ExitCode::SUCCESS
}

/// How a child run ended without an answer.
#[derive(Debug)]
enum ChildEnd {
    Spawn(std::io::Error),
    Deadline,
    Cancelled,
    Signal { signal: i32, stderr: String },
    Exit { code: i32, stderr: String },
    Oversized,
}

/// Sets the caller's flag when the caller stops waiting: the child is then killed.
struct KillOnDrop(Arc<AtomicBool>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs one child for `request` and returns its answer, or the error the request gets.
pub async fn run(command: &ChildCommand, budget: &Budget, request: &Request) -> Result<Answer, EngineError> {
    let input =
        serde_json::to_vec(request).map_err(|e| EngineError::Transient(format!("encoding a plan request: {e}")))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = KillOnDrop(Arc::clone(&cancel));
    let (cmd, b) = (command.clone(), budget.clone());
    let started = Instant::now();
    let ended = tokio::task::spawn_blocking(move || run_blocking(&cmd, &b, &input, &cancel))
        .await
        .map_err(|e| EngineError::Transient(format!("planning in a child process: {e}")))?;
    let ms = started.elapsed().as_millis() as u64;
    match ended {
        Ok(stdout) => {
            let answer: Answer = serde_json::from_slice(&stdout)
                .map_err(|e| unavailable(command, format!("the planner process gave no plan answer ({e})")))?;
            if answer.protocol != PROTOCOL {
                return Err(unavailable(
                    command,
                    format!("the planner process speaks {:?}, not {PROTOCOL}", answer.protocol),
                ));
            }
            tracing::debug!(database = %request.database, ms, "planned in a child process");
            Ok(answer)
        }
        Err(end) => {
            let error = classify(command, budget, end);
            tracing::warn!(database = %request.database, ms, error = %error, "planning in a child process failed");
            Err(error)
        }
    }
}

/// The error a child that ended without an answer becomes.
fn classify(command: &ChildCommand, budget: &Budget, end: ChildEnd) -> EngineError {
    let over = |what: &str| {
        EngineError::Permanent(format!(
            "planning this query exceeded its memory/CPU budget ({}) before approval ({what}); simplify it",
            budget.describe()
        ))
    };
    match end {
        ChildEnd::Spawn(e) => unavailable(command, format!("could not start the planner process: {e}")),
        ChildEnd::Cancelled => EngineError::Transient("planning was cancelled".into()),
        ChildEnd::Deadline => over(&format!("still running after {}", format_duration(budget.wall))),
        ChildEnd::Oversized => {
            EngineError::Permanent(format!("planning this query gave an answer over {} bytes", MAX_ANSWER_BYTES))
        }
        ChildEnd::Signal { signal, stderr } => {
            let what = if signal == libc::SIGXCPU || (signal == libc::SIGKILL && stderr.is_empty()) {
                "out of CPU time".to_string()
            } else if stderr.contains("memory allocation") || stderr.contains("out of memory") {
                "out of memory".to_string()
            } else if stderr.contains("overflowed its stack") {
                "out of stack".to_string()
            } else {
                format!("stopped by signal {signal}")
            };
            over(&what)
        }
        // A panic while planning: the SQL's fault as far as anyone can tell.
        ChildEnd::Exit { code: 101, stderr } => EngineError::Permanent(format!(
            "planning this query failed unexpectedly before approval: {}",
            panic_message(&stderr)
        )),
        ChildEnd::Exit { code, stderr } => unavailable(
            command,
            format!(
                "the planner process exited with {code}: {}",
                stderr.lines().next().unwrap_or("").chars().take(300).collect::<String>()
            ),
        ),
    }
}

/// The first line of a Rust panic report, shortened.
fn panic_message(stderr: &str) -> String {
    let line = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("the planner panicked");
    line.chars().take(300).collect()
}

fn run_blocking(
    command: &ChildCommand,
    budget: &Budget,
    input: &[u8],
    cancel: &AtomicBool,
) -> Result<Vec<u8>, ChildEnd> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};

    let memory = budget.memory_bytes as libc::rlim_t;
    let cpu = budget.cpu_secs() as libc::rlim_t;
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .env_clear()
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = |resource, soft: libc::rlim_t, hard: libc::rlim_t| {
                let r = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                if libc::setrlimit(resource, &r) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            };
            limit(libc::RLIMIT_DATA, memory, memory)?;
            limit(libc::RLIMIT_CPU, cpu, cpu + 1)?;
            limit(libc::RLIMIT_CORE, 0, 0)?;
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            // A group of its own, so a kill reaches anything it started too.
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(ChildEnd::Spawn)?;
    let mut stdin = child.stdin.take();
    let input = input.to_vec();
    let writer = std::thread::Builder::new().name("sqlctl-preflight-in".into()).spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&input);
        }
        // Dropped here: the child sees the end of its request.
    });
    let reader = |pipe: Option<Box<dyn Read + Send>>, max: u64| {
        std::thread::Builder::new().name("sqlctl-preflight-out".into()).spawn(move || {
            let mut kept = Vec::new();
            let mut over = false;
            if let Some(mut p) = pipe {
                let _ = (&mut p).take(max + 1).read_to_end(&mut kept);
                if kept.len() as u64 > max {
                    over = true;
                    kept.truncate(max as usize);
                    // Keep draining so the child never blocks on a full pipe.
                    let _ = std::io::copy(&mut p, &mut std::io::sink());
                }
            }
            (kept, over)
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), MAX_ANSWER_BYTES);
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), MAX_STDERR_BYTES);

    let deadline = Instant::now() + budget.wall;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(ChildEnd::Spawn(e)),
        }
        let cancelled = cancel.load(Ordering::Relaxed);
        if cancelled || Instant::now() >= deadline {
            // The whole group (the child leads it; not reaped yet, so the id is still its own).
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            break Err(if cancelled { ChildEnd::Cancelled } else { ChildEnd::Deadline });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    let join = |h: std::io::Result<std::thread::JoinHandle<(Vec<u8>, bool)>>| {
        h.ok().and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (out, out_over) = join(stdout);
    let (err, _) = join(stderr);
    if let Ok(w) = writer {
        let _ = w.join();
    }
    let status = status?;
    let stderr = String::from_utf8_lossy(&err).into_owned();
    if let Some(signal) = status.signal() {
        return Err(ChildEnd::Signal { signal, stderr });
    }
    match status.code() {
        Some(0) if out_over => Err(ChildEnd::Oversized),
        Some(0) => Ok(out),
        Some(code) => Err(ChildEnd::Exit { code, stderr }),
        None => Err(ChildEnd::Signal { signal: 0, stderr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ChildCommand {
        ChildCommand { program: "/bin/sh".into(), args: vec!["-c".into(), script.into()] }
    }

    fn request() -> Request {
        Request {
            protocol: PROTOCOL.into(),
            data_dir: "/nonexistent".into(),
            database: "tpch".into(),
            sql: "select 1".into(),
        }
    }

    fn small() -> Budget {
        Budget { memory_bytes: 256 << 20, cpu: Duration::from_secs(1), wall: Duration::from_secs(3) }
    }

    fn permanent(r: Result<Answer, EngineError>) -> String {
        match r {
            Err(EngineError::Permanent(m)) => m,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_is_read_back() {
        let answer = Answer {
            protocol: PROTOCOL.into(),
            plan: None,
            estimate: Some(Ok(Estimate { bytes: 7, cost_usd: 0.0, method: "m".into() })),
        };
        let json = serde_json::to_string(&answer).unwrap();
        let got = run(&sh(&format!("cat >/dev/null; printf '%s' '{json}'")), &small(), &request()).await.unwrap();
        assert_eq!(got, answer);
    }

    #[tokio::test]
    async fn limits_deadlines_and_signals_are_permanent_budget_errors() {
        // CPU: a busy loop under RLIMIT_CPU=1s is stopped by SIGXCPU. The wall deadline is far
        // off here, so a loaded machine (the loop gets a second of CPU slowly) still trips the
        // CPU limit first; the deadline has its own case below.
        let cpu_only = Budget { wall: Duration::from_secs(60), ..small() };
        let m = permanent(run(&sh("while :; do :; done"), &cpu_only, &request()).await);
        assert!(m.contains("exceeded its memory/CPU budget") && m.contains("before approval"), "{m}");
        assert!(m.contains("out of CPU time") && m.contains("simplify it"), "{m}");
        // Wall clock: a sleeper is killed at the deadline.
        let b = Budget { wall: Duration::from_millis(300), ..small() };
        let started = Instant::now();
        let m = permanent(run(&sh("sleep 30"), &b, &request()).await);
        assert!(m.contains("still running after"), "{m}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // An abort (what an allocation failure ends in).
        let m = permanent(
            run(&sh("echo 'memory allocation of 1 bytes failed' >&2; kill -ABRT $$"), &small(), &request()).await,
        );
        assert!(m.contains("out of memory"), "{m}");
        // A panic.
        let m = permanent(run(&sh("echo \"thread 'main' panicked at x\" >&2; exit 101"), &small(), &request()).await);
        assert!(m.contains("failed unexpectedly") && m.contains("panicked"), "{m}");
    }

    #[tokio::test]
    async fn the_child_runs_under_the_limits_without_the_parent_s_environment() {
        // The child reports its own limits (KiB and seconds) and environment in the answer.
        let script = r#"cat >/dev/null; printf '{"protocol":"%s","plan":null,"estimate":{"Ok":{"bytes":%s,"costUsd":%s,"method":"%s/%s/%s"}}}' \
            sqlctl-preflight/1 "$(ulimit -d)" "$(ulimit -t)" "$(ulimit -c)" "${MALLOC_ARENA_MAX:-}" "${HOME:-nohome}""#;
        let got = run(&sh(script), &small(), &request()).await.unwrap();
        let e = got.estimate.unwrap().unwrap();
        assert_eq!(e.bytes, 256 << 10, "RLIMIT_DATA in KiB");
        assert_eq!(e.cost_usd, 1.0, "RLIMIT_CPU in seconds");
        assert_eq!(e.method, "0/2/nohome", "no core dumps, two malloc arenas, an empty environment");
    }

    #[tokio::test]
    async fn a_missing_binary_or_a_foreign_answer_is_a_deployment_problem_not_a_sql_error() {
        let missing = ChildCommand::sqlctl("/nonexistent/sqlctl");
        let r = run(&missing, &small(), &request()).await;
        assert!(
            matches!(&r, Err(EngineError::Unavailable { setting, .. }) if setting.contains("/nonexistent/sqlctl __preflight")),
            "{r:?}"
        );
        let r = run(&sh("cat >/dev/null; echo hello"), &small(), &request()).await;
        assert!(
            matches!(&r, Err(EngineError::Unavailable { message, .. }) if message.contains("no plan answer")),
            "{r:?}"
        );
        let r = run(&sh("exit 2"), &small(), &request()).await;
        assert!(matches!(r, Err(EngineError::Unavailable { .. })));
        // Failures cross the pipe with their kind.
        for e in [
            EngineError::Permanent("p".into()),
            EngineError::Transient("t".into()),
            EngineError::Unavailable { setting: "s".into(), message: "m".into() },
        ] {
            let shown = e.to_string();
            assert_eq!(EngineError::from(Failure::from(e)).to_string(), shown);
        }
    }

    #[tokio::test]
    async fn a_dropped_caller_kills_the_child() {
        let started = Instant::now();
        let b = Budget { wall: Duration::from_secs(30), ..small() };
        let cmd = sh("sleep 30");
        let r = tokio::time::timeout(Duration::from_millis(200), run(&cmd, &b, &request())).await;
        assert!(r.is_err());
        // The blocking runner notices within its poll interval; nothing waits 30 s.
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
