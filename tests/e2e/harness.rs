//! Test harness: a temp home, the shared warehouse, running the binary and controllers.
// Some helpers serve only the AWS tests, which a build without the `aws` feature leaves out.
#![cfg_attr(not(feature = "aws"), allow(dead_code))]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sqlctl");

/// The scale-0.01 warehouse, written once per test binary run.
pub fn warehouse() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sqlctl-e2e-warehouse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sqlctl::warehouse::init_tpch(&dir, "tpch", 0.01, &mut |_, _| {}).expect("writing the test warehouse");
        dir
    })
}

/// Lease timings and resync period short enough for a test to see a takeover or a resync.
pub const FAST_LEASE: &[&str] =
    &["--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s", "--resync", "2s"];

/// An axum app served on 127.0.0.1 (a free port) on a thread and runtime of its own, so sync
/// tests and the binary can reach it; stops and joins when dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serves `app(stopping)` on `workers` threads (1: a current-thread runtime); `stopping`
    /// turns true when the server is dropped, so a handler can cut a scripted delay short.
    pub fn start(workers: usize, app: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> axum::Router) -> Served {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let app = app(stopping.clone());
        let thread = std::thread::spawn(move || {
            let rt = if workers <= 1 {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
            } else {
                tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap()
            };
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut stopping = stopping;
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopping.wait_for(|v| *v).await;
                    })
                    .await
                    .unwrap();
            });
        });
        Served { addr, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Background processes a test started (controllers): killed and reaped when it drops.
#[derive(Default)]
pub struct Children(Mutex<Vec<Child>>);

impl Children {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Starts `c` with stderr to `log` (stdout dropped); returns its pid.
    pub fn spawn(&self, mut c: Command, log: PathBuf) -> u32 {
        let f = std::fs::File::create(log).unwrap();
        self.push(c.stdout(Stdio::null()).stderr(f).spawn().unwrap())
    }

    /// Kills and reaps one child.
    pub fn stop(&self, pid: u32) {
        let mut kids = self.0.lock().unwrap();
        if let Some(c) = kids.iter_mut().find(|c| c.id() == pid) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Keeps `child` for reaping; returns its pid.
    pub fn push(&self, child: Child) -> u32 {
        let pid = child.id();
        self.0.lock().unwrap().push(child);
        pid
    }

    /// The exit code of a child that has exited, None while it runs.
    pub fn exited(&self, pid: u32) -> Option<i32> {
        let mut kids = self.0.lock().unwrap();
        let c = kids.iter_mut().find(|c| c.id() == pid)?;
        c.try_wait().ok().flatten().map(|st| st.code().unwrap_or(-1))
    }

    /// Waits up to `timeout` for a child to exit; returns its exit code.
    pub fn wait(&self, pid: u32, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(code) = self.exited(pid) {
                return Some(code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in self.0.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One test's world: its own SQLCTL_HOME (state.db, results) over the shared warehouse.
pub struct Env {
    // Dropped first: the controllers stop before their home goes.
    children: Children,
    pub home: tempfile::TempDir,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    pub fn new() -> Env {
        warehouse();
        Env { home: tempfile::tempdir().unwrap(), children: Default::default() }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SQLCTL_HOME", self.home.path())
            .env("SQLCTL_DATA_DIR", warehouse())
            .env("USER", "tester")
            .env("SQLCTL_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    /// `sqlctl` with test credentials for AWS services at `endpoint` (moto or a fake in front of
    /// it), and nothing read from the machine's AWS configuration or instance metadata.
    #[cfg(feature = "aws")]
    pub fn aws_cmd(&self, endpoint: &str) -> Command {
        let mut c = self.cmd();
        c.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        c
    }

    /// Writes approvals of request `name` (as it stands now, at its current round and
    /// `digest`) straight into the store, behind the CLI's back, as a queue consumer might:
    /// one record per `(id, by)`. The controller must re-check each.
    pub fn forge_approvals(&self, name: &str, digest: &str, forged: &[(String, String)]) {
        let v = self.get(name);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use sqlctl::store::Store;
            let store = sqlctl::store::sqlite::SqliteStore::open(self.home.path().join("state.db")).unwrap();
            for (id, by) in forged {
                let d = sqlctl::spec::Decision {
                    id: id.clone(),
                    namespace: "default".into(),
                    name: name.into(),
                    uid: v["metadata"]["uid"].as_str().unwrap().into(),
                    generation: 1,
                    round: v["status"]["approvalRound"].as_u64().unwrap() as u32,
                    sql_digest: digest.into(),
                    decision: sqlctl::spec::DecisionKind::Approve,
                    feedback: None,
                    comment: None,
                    by: by.clone(),
                    at: chrono::Utc::now(),
                    source: "test".into(),
                    allow_over_budget: false,
                };
                store.create_decision(&d).await.unwrap();
            }
        });
    }

    /// Runs `sqlctl ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Out {
        self.cmd().args(args).output().expect("running sqlctl").into()
    }

    /// Runs a shell pipeline with the same environment as [`Env::cmd`]; `$SQLCTL` is the binary.
    pub fn sh(&self, script: &str) -> Out {
        let mut c = self.cmd();
        let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            c.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
        c = Command::new("sh");
        c.env_clear().envs(envs).env("SQLCTL", BIN).arg("-c").arg(script).stdin(Stdio::null());
        c.output().expect("running sh").into()
    }

    /// Runs `sqlctl ARGS` with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        let mut child =
            self.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out.into()
    }

    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(o.code, 0, "sqlctl {args:?} failed: {o:?}");
        o
    }

    pub fn apply(&self, yaml: &str) -> Out {
        self.run_stdin(&["apply", "-f", "-"], yaml.as_bytes())
    }

    /// Starts `sqlctl controller ARGS` in the background (killed when the Env drops).
    pub fn controller(&self, args: &[&str]) -> u32 {
        let log = self.home.path().join(format!("controller-{}.log", self.children.len()));
        let f = std::fs::File::create(&log).unwrap();
        let child = self
            .cmd()
            .arg("controller")
            .args(
                [
                    ("--retry-period", "200ms"),
                    ("--renew-deadline", "1s"),
                    ("--lease-duration", "2s"),
                    ("--resync", "2s"),
                ]
                .into_iter()
                .filter(|(flag, _)| !args.contains(flag))
                .flat_map(|(flag, value)| [flag, value]),
            )
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        self.children.push(child)
    }

    pub fn controller_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.home.path().join(format!("controller-{i}.log"))).unwrap_or_default()
    }

    /// Waits for a child started by `controller` to exit; returns its exit code.
    pub fn wait_child(&self, pid: u32, timeout: Duration) -> Option<i32> {
        self.children.wait(pid, timeout)
    }

    /// Reads a request as JSON.
    pub fn get(&self, name: &str) -> serde_json::Value {
        let o = self.ok(&["get", name, "-o", "json"]);
        serde_json::from_str(&o.stdout).unwrap()
    }

    pub fn phase(&self, name: &str) -> String {
        self.get(name)["status"]["phase"].as_str().unwrap_or("Pending").to_string()
    }

    /// Polls until the request is in `phase` (panics with its describe output otherwise).
    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            // The request may not exist yet (created by a process still starting).
            let o = self.run(&["get", name, "-o", "json"]);
            let v: serde_json::Value =
                if o.code == 0 { serde_json::from_str(&o.stdout).unwrap() } else { serde_json::Value::Null };
            if v["status"]["phase"] == phase {
                return v;
            }
            if start.elapsed() > timeout {
                let d = self.run(&["describe", name]);
                panic!(
                    "{name} did not reach {phase} within {timeout:?}: {d:?}\ncontroller log:\n{}",
                    self.controller_log(0)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn digest(&self, name: &str) -> String {
        self.get(name)["status"]["generated"]["sqlDigest"].as_str().expect("a digest").to_string()
    }

    /// Number of stored requests.
    pub fn count(&self) -> usize {
        let o = self.ok(&["get", "-o", "json", "-A"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v["items"].as_array().unwrap().len()
    }
}

/// A request spec with hand-written SQL.
pub fn sql_spec(name: &str, sql: &str) -> String {
    format!(
        "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n  sql: |\n    {}\n  catalog:\n    database: tpch\n",
        sql.replace('\n', "\n    ")
    )
}

pub fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

pub const T: Duration = Duration::from_secs(60);
