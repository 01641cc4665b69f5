//! Test harness: a temp home, the shared warehouse, running the binary and controllers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
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

/// One test's world: its own SQLCTL_HOME (state.db, results) over the shared warehouse.
pub struct Env {
    pub home: tempfile::TempDir,
    children: std::sync::Mutex<Vec<Child>>,
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

    /// Runs `sqlctl ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Out {
        self.cmd().args(args).output().expect("running sqlctl").into()
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
        let log = self.home.path().join(format!("controller-{}.log", self.children.lock().unwrap().len()));
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
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        pid
    }

    pub fn controller_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.home.path().join(format!("controller-{i}.log"))).unwrap_or_default()
    }

    /// Waits for a child started by `controller` to exit; returns its exit code.
    pub fn wait_child(&self, pid: u32, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let mut kids = self.children.lock().unwrap();
            if let Some(c) = kids.iter_mut().find(|c| c.id() == pid)
                && let Ok(Some(st)) = c.try_wait()
            {
                return Some(st.code().unwrap_or(-1));
            }
            drop(kids);
            std::thread::sleep(Duration::from_millis(50));
        }
        None
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

impl Drop for Env {
    fn drop(&mut self) {
        for c in self.children.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
