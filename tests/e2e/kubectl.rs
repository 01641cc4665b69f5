//! kubectl conventions through the real binary: `get -w` streaming changes from the store's
//! change feed, and `version` naming the client's and the running controller's builds.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Env, sql_spec};

const T: Duration = Duration::from_secs(60);

/// A running `sqlctl get -w …` whose stdout lines arrive on a channel; killed on drop.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(env: &Env, args: &[&str]) -> Watch {
        let mut child = env.cmd().arg("get").args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines, seen: Vec::new() }
    }

    /// Waits for a line for which `pred` holds; panics with everything seen after `T`.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what} within {T:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn get_watch_lists_then_streams_creations_changes_and_deletions() {
    let env = Env::new();
    env.apply(&sql_spec("w-one", "select count(*) from nation"));
    let mut table = Watch::start(&env, &["-w"]);
    let mut events = Watch::start(&env, &["--watch", "-o", "name", "--output-watch-events"]);
    let mut only = Watch::start(&env, &["w-two", "--watch-only", "-o", "jsonpath={.metadata.name} {.spec.sql}"]);

    // The listing first: a header, then the existing request.
    let header = table.expect("header", |l| l.starts_with("NAME"));
    assert!(header.contains("PHASE"), "{header}");
    table.expect("w-one listed", |l| l.starts_with("w-one "));
    events.expect("w-one listed", |l| l == "ADDED queryrequest/w-one");

    // A creation and a spec change stream in; --watch-only with a name shows only that one.
    env.apply(&sql_spec("w-two", "select count(*) from region"));
    table.expect("w-two added", |l| l.starts_with("w-two "));
    events.expect("w-two added", |l| l == "ADDED queryrequest/w-two");
    only.expect("w-two as created", |l| l.starts_with("w-two select count(*) from region"));
    env.apply(&sql_spec("w-two", "select count(*) from supplier"));
    events.expect("w-two modified", |l| l == "MODIFIED queryrequest/w-two");
    only.expect("w-two as changed", |l| l.starts_with("w-two select count(*) from supplier"));

    // A deletion is shown as last seen.
    env.ok(&["delete", "w-one"]);
    events.expect("w-one deleted", |l| l == "DELETED queryrequest/w-one");
    let second_header = table.seen.iter().filter(|l| l.starts_with("NAME")).count();
    assert_eq!(second_header, 1, "the header is printed once: {:?}", table.seen);
    assert!(
        !only.seen.iter().any(|l| l.contains("w-one")),
        "--watch-only w-two showed another request: {:?}",
        only.seen
    );
}

#[test]
fn get_watch_with_json_wraps_objects_in_events() {
    let env = Env::new();
    let mut w = Watch::start(&env, &["-w", "--watch-only", "-o", "json", "--output-watch-events"]);
    // Give the watcher its cursor before the write (it is taken before anything is printed).
    std::thread::sleep(Duration::from_millis(500));
    env.apply(&sql_spec("w-json", "select 1"));
    // Pretty JSON spans lines: collect up to the closing brace of the event.
    w.expect("the event's end", |l| l == "}");
    let text = w.seen.join("\n");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["type"], "ADDED", "{v}");
    assert_eq!(v["object"]["metadata"]["name"], "w-json", "{v}");
    assert_eq!(v["object"]["kind"], "QueryRequest", "{v}");
}

#[test]
fn version_names_the_client_and_the_controller_holding_the_lease() {
    let env = Env::new();
    let client = env.ok(&["version", "--client"]).stdout;
    assert!(client.starts_with("Client Version: sqlctl "), "{client}");
    assert!(client.contains("(commit ") && client.contains("profile debug"), "{client}");
    assert!(!client.contains("Controller Version"), "--client reads no store: {client}");

    let none = env.ok(&["version"]).stdout;
    assert!(none.contains("Controller Version: none"), "{none}");

    env.controller(&[]);
    let deadline = Instant::now() + T;
    let v = loop {
        let out = env.ok(&["version", "-o", "json"]).stdout;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        if v["controllerVersion"]["live"] == true || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (c, s) = (&v["clientVersion"], &v["controllerVersion"]);
    assert_eq!(s["live"], true, "{v}");
    assert_eq!(c["version"], s["version"], "{v}");
    assert_eq!(c["commit"], s["commit"], "{v}");
    assert_eq!(s["profile"], "debug", "{v}");
    assert!(s["identity"].as_str().is_some_and(|i| !i.is_empty()), "{v}");
    let line = env.ok(&["version"]).stdout;
    assert!(line.contains("Controller Version: sqlctl ") && line.contains("— leader "), "{line}");
    let yaml = env.ok(&["version", "-o", "yaml"]).stdout;
    assert!(yaml.contains("clientVersion:") && yaml.contains("controllerVersion:"), "{yaml}");
}
