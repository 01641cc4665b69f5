//! The approval console served beside the controller (`sqlctl controller --console-addr`):
//! a decision made over HTTP runs through the same path as the CLI and the request reaches Done.
//! (The browser tests in tests/browser drive `sqlctl console` in Chromium.)

use std::time::{Duration, Instant};

use crate::harness::Env;

const T: Duration = Duration::from_secs(60);

/// The console URL the controller logged on start.
pub fn console_url(env: &Env) -> String {
    let start = Instant::now();
    loop {
        let log = env.controller_log(0);
        let line = log.lines().find(|l| l.contains("serving the approval console"));
        if let Some(rest) = line.and_then(|l| l.split_once("http://")).map(|(_, rest)| rest) {
            // The log may be coloured: the URL ends at whitespace or an escape sequence.
            let end = rest.find(|c: char| c.is_whitespace() || c == '\u{1b}').unwrap_or(rest.len());
            return format!("http://{}", rest[..end].trim_end_matches('/'));
        }
        assert!(start.elapsed() < T, "the controller did not start the console:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn field(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let start = html.find(&pat).unwrap_or_else(|| panic!("no {name} field in:\n{html}")) + pat.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

#[test]
fn the_console_beside_the_controller_decides_through_the_cli_path() {
    let env = Env::new();
    // Without an identity source the controller refuses the console flag (and does not start).
    let o = env.run(&["controller", "--console-addr", "127.0.0.1:0"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--console-token") && o.stderr.contains("--console-auth-header"), "{o:?}");

    env.controller(&["--console-addr", "127.0.0.1:0", "--console-auth-header", "x-user", "--four-eyes"]);
    let base = console_url(&env);
    let yaml = "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: nations\nspec:\n  question: How many nations are there?\n  catalog:\n    database: tpch\n";
    assert_eq!(env.apply(yaml).code, 0);
    env.wait_phase("nations", "AwaitingApproval", T);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let detail = format!("{base}/requests/default/nations");
        // Four-eyes, checked by the same policy code as the CLI: the requester may not approve.
        for (user, status) in [("tester", 403), ("approver", 303)] {
            let res = http.get(&detail).header("x-user", user).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
            let html = res.text().await.unwrap();
            let body = ["csrf", "uid", "generation", "round", "digest"]
                .iter()
                .map(|k| format!("{k}={}", field(&html, k)))
                .collect::<Vec<_>>()
                .join("&");
            let res = http
                .post(format!("{detail}/approve"))
                .header("x-user", user)
                .header("cookie", cookie)
                .header("origin", &base)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), status, "{user}: {}", res.text().await.unwrap());
        }
    });
    let v = env.wait_phase("nations", "Done", T);
    assert_eq!(v["status"]["approval"]["by"], "approver");
    assert_eq!(v["status"]["execution"]["preview"]["rows"][0][0], "25");
}
