//! Shared world of the `--backend aws` tests: moto (started by `scripts/test`), resources made by
//! the real `sqlctl aws bootstrap`, the fake Athena/Glue server in front of moto, and the binary
//! run with the AWS environment.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};

use crate::fake_aws::{FakeAws, FakeGlue};
use crate::harness::*;

/// moto's URL, or None when the AWS tests are skipped explicitly. Without either the tests
/// fail: they must never pass by not running.
pub fn moto_url() -> Option<String> {
    if let Ok(u) = std::env::var("SQLCTL_TEST_MOTO_URL")
        && !u.is_empty()
    {
        return Some(u);
    }
    if std::env::var("SQLCTL_SKIP_AWS_TESTS").as_deref() == Ok("1") {
        return None;
    }
    panic!(
        "SQLCTL_TEST_MOTO_URL is not set: run the tests through scripts/test (it starts moto), or set SQLCTL_SKIP_AWS_TESTS=1 to skip the AWS tests explicitly"
    );
}

/// moto's fixed SQS SenderId (one IAM user for every message).
pub const MOTO_SENDER: &str = "AIDAIT2UOQQY3AUEKVGXU";

pub struct AwsWorld {
    // Dropped first: the controllers stop before moto's resources and the home go.
    children: Children,
    pub env: Env,
    pub moto: String,
    pub prefix: String,
    /// `SQLCTL_*` variables printed by bootstrap.
    pub exports: Vec<(String, String)>,
    pub fake: FakeAws,
    pub rt: tokio::runtime::Runtime,
    pub sdk: SdkConfig,
}

impl AwsWorld {
    /// Bootstraps a fresh set of resources (unique prefix) in moto. `register_local`: copy the
    /// test warehouse's tpch to S3 and register it in moto's Glue; otherwise the fake serves
    /// Glue (tpch, 3 tables per page).
    pub fn new(register_local: bool) -> Option<AwsWorld> {
        let moto = moto_url()?;
        let env = Env::new();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let glue = if register_local {
            None
        } else {
            let tables = rt
                .block_on(async {
                    use sqlctl::catalog::Catalog;
                    sqlctl::catalog::local::LocalCatalog::new(warehouse()).tables("tpch").await
                })
                .unwrap();
            Some(FakeGlue { database: "tpch".into(), tables, page: 3 })
        };
        let fake = FakeAws::start(Some(moto.clone()), warehouse().to_path_buf(), glue);
        let sdk = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(&moto)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
                .load(),
        );
        let prefix = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut w = AwsWorld { env, moto, prefix, exports: vec![], fake, rt, sdk, children: Children::default() };
        let mut args = vec!["aws", "bootstrap", "--prefix", &w.prefix];
        if register_local {
            args.extend(["--register-local", "tpch"]);
        }
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let o = w.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.code, 0, "bootstrap failed: {o:?}");
        for line in o.stdout.lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('='))
                && k.starts_with("SQLCTL_")
            {
                w.exports.push((k.to_string(), v.to_string()));
            }
        }
        assert!(w.exports.iter().any(|(k, _)| k == "SQLCTL_RESPONSE_QUEUE_URL"), "{o:?}");
        Some(w)
    }

    pub fn export(&self, name: &str) -> String {
        self.exports.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// `sqlctl` with the AWS environment, talking to `endpoint`.
    pub fn cmd_at(&self, endpoint: &str) -> Command {
        let mut c = self.env.aws_cmd(endpoint);
        c.env("SQLCTL_BACKEND", "aws").env("SQLCTL_SQS_SENDERS", format!("{MOTO_SENDER}=alice"));
        for (k, v) in &self.exports {
            c.env(k, v);
        }
        c
    }

    /// CLI commands talk to moto directly (so the fake counts only the controller's calls).
    pub fn run(&self, args: &[&str]) -> Out {
        self.cmd_at(&self.moto).args(args).output().expect("running sqlctl").into()
    }

    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(o.code, 0, "sqlctl {args:?} failed: {o:?}");
        o
    }

    pub fn apply(&self, yaml: &str) -> Out {
        use std::io::Write;
        let mut child = self
            .cmd_at(&self.moto)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Starts `sqlctl controller` against the fake (which forwards to moto), with short lease
    /// timings so that a takeover test is quick.
    pub fn controller(&self, args: &[&str]) -> u32 {
        self.controller_with(FAST_LEASE, args)
    }

    /// Starts a controller with the default lease timings and resync period (load tests: a busy
    /// moto on a busy machine can take longer than a second to answer a renewal).
    pub fn controller_with(&self, lease: &[&str], args: &[&str]) -> u32 {
        let i = self.children.len();
        let log = self.env.home.path().join(format!("aws-controller-{i}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = self
            .cmd_at(&self.fake.url)
            .env("SQLCTL_LOG", "info,sqlctl::aws::call=debug")
            .arg("controller")
            .args(lease)
            .args(["--generator", "offline"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        self.children.push(child)
    }

    pub fn controller_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.env.home.path().join(format!("aws-controller-{i}.log"))).unwrap_or_default()
    }

    /// The exit code of a controller that has exited, None while it runs.
    pub fn exited(&self, pid: u32) -> Option<i32> {
        self.children.exited(pid)
    }

    pub fn wait_child(&self, pid: u32, timeout: Duration) -> Option<i32> {
        self.children.wait(pid, timeout)
    }

    pub fn get(&self, name: &str) -> serde_json::Value {
        let o = self.run(&["get", name, "-o", "json"]);
        if o.code != 0 {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&o.stdout).unwrap()
    }

    /// Polls until `name` is in `phase`.
    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for(name, timeout, |v| v["status"]["phase"] == phase, phase)
    }

    pub fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
        what: &str,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let v = self.get(name);
            if pred(&v) {
                return v;
            }
            if start.elapsed() > timeout {
                let d = self.run(&["describe", name]);
                panic!(
                    "{name}: {what} not reached within {timeout:?}: {d:?}\ncontroller log:\n{}",
                    self.controller_log(0)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// Receives (and deletes) the messages now in `queue_url`.
    pub fn drain(&self, queue_url: &str, wait: Duration) -> Vec<(String, Option<String>)> {
        let sqs = self.sqs();
        self.rt.block_on(async {
            let deadline = Instant::now() + wait;
            let mut out = Vec::new();
            loop {
                let r = sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .message_attribute_names("All")
                    .send()
                    .await
                    .unwrap();
                for m in r.messages() {
                    let reason = m
                        .message_attributes()
                        .and_then(|a| a.get(sqlctl::approval::sqs::REASON_ATTRIBUTE))
                        .and_then(|v| v.string_value())
                        .map(str::to_string);
                    out.push((m.body().unwrap_or_default().to_string(), reason));
                    sqs.delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
                if (!out.is_empty() && r.messages().is_empty()) || Instant::now() > deadline {
                    return out;
                }
            }
        })
    }

    /// The next approval request for `name` on the request queue.
    pub fn approval_request(&self, name: &str, timeout: Duration) -> sqlctl::approval::sqs::ApprovalRequestMessage {
        let start = Instant::now();
        loop {
            for (body, _) in self.drain(&self.export("SQLCTL_REQUEST_QUEUE_URL"), Duration::from_secs(2)) {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if v["type"] == "ApprovalRequest" && v["name"] == name {
                    return serde_json::from_value(v).unwrap();
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no approval request for {name}; controller log:\n{}",
                self.controller_log(0)
            );
        }
    }

    pub fn send(&self, queue_url: &str, body: serde_json::Value) {
        let sqs = self.sqs();
        self.rt.block_on(async {
            sqs.send_message().queue_url(queue_url).message_body(body.to_string()).send().await.unwrap()
        });
    }

    /// Sends a decision on `m` to the response queue.
    pub fn decide(&self, m: &sqlctl::approval::sqs::ApprovalRequestMessage, decision: &str, extra: serde_json::Value) {
        let mut body = serde_json::json!({
            "name": m.name, "namespace": m.namespace, "uid": m.uid, "generation": m.generation,
            "round": m.round, "sqlDigest": m.sql_digest, "decision": decision,
        });
        if let serde_json::Value::Object(x) = extra {
            for (k, v) in x {
                body[k] = v;
            }
        }
        self.send(&self.export("SQLCTL_RESPONSE_QUEUE_URL"), body);
    }
}

/// A request spec on --backend aws.
pub fn spec(name: &str, body: &str) -> String {
    format!("apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n{body}")
}
