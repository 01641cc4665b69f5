//! HTTP-level tests: the real console on a loopback port over a real SQLite store, driven with
//! reqwest (no redirects followed, cookies handled by hand so every header is visible).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderName;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use tokio::sync::watch;

use super::html::url_encode;
use super::*;
use crate::spec::*;
use crate::store::sqlite::SqliteStore;

const TOKEN: &str = "correct-horse-battery-staple";
const USER_HEADER: &str = "x-remote-user";

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    base: String,
    http: reqwest::Client,
    _stop: watch::Sender<bool>,
}

fn token_mode(user: &str) -> AuthMode {
    AuthMode::Token { token: TOKEN.into(), user: user.into() }
}

fn header_mode() -> AuthMode {
    AuthMode::Header(HeaderName::from_static(USER_HEADER))
}

async fn fixture(auth: AuthMode) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
    let (tx, rx) = watch::channel(false);
    let config = ConsoleConfig {
        auth,
        key: ServerKey::derive("console-tests-session-key"),
        poll: Duration::from_millis(20),
        relist: Duration::from_secs(60),
    };
    // The real results directory: the console only reads charts from it.
    let results = Arc::new(crate::results::local::LocalResults::new(dir.path().join("results")));
    let parts = Parts { store: store.clone(), results, config };
    let (addr, _handle) = serve("127.0.0.1:0".parse().unwrap(), parts, rx).await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Fixture { dir, store, base: format!("http://{addr}"), http, _stop: tx }
}

fn spec(question: &str) -> QueryRequestSpec {
    QueryRequestSpec {
        question: Some(question.into()),
        catalog: CatalogRef { database: "tpch".into(), tables: vec![] },
        ..Default::default()
    }
}

/// A request by `requester` awaiting approval of `select n_name from nation` (round 1).
async fn awaiting(store: &dyn Store, name: &str, requester: &str, spec: QueryRequestSpec) -> QueryRequest {
    let mut r = QueryRequest { spec, ..QueryRequest::new(name, "") };
    r.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), requester.into());
    let r = store.create(r).await.unwrap();
    set_sql(store, r, 1, "select n_name from nation order by n_name").await
}

/// Puts `r` in AwaitingApproval of `sql` in approval round `round`, recording the SQL in history.
async fn set_sql(store: &dyn Store, mut r: QueryRequest, round: u32, sql: &str) -> QueryRequest {
    let digest = sql_digest(EngineKind::Local, "tpch", sql, &r.spec.effective_limits());
    let mut st = r.status.take().unwrap_or_default();
    st.history.push(HistoryEntry {
        sql: Some(sql.into()),
        sql_digest: Some(digest.clone()),
        ..HistoryEntry::new("Generated", r.generation())
    });
    st.phase = Phase::AwaitingApproval;
    st.observed_generation = r.generation();
    st.approval_round = round;
    st.generated = Some(Generated {
        sql: sql.into(),
        sql_digest: digest,
        explanation: "Lists nation names.".into(),
        confidence: 0.9,
        model: "offline".into(),
        ..Default::default()
    });
    r.status = Some(st);
    store.update_status(&r, None).await.unwrap()
}

/// The `name=value` part of a response's session cookie.
fn cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sqlctl_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
}

/// The value of the first hidden field `name` in a page.
fn field(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let start = html.find(&pat).unwrap_or_else(|| panic!("no field {name} in page:\n{html}")) + pat.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect::<Vec<_>>().join("&")
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self.http.get(self.url(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.unwrap()
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: String) -> reqwest::Response {
        let mut rb = self
            .http
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ORIGIN, self.base.as_str());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.body(body).send().await.unwrap()
    }

    /// Logs in with the token; returns the session cookie.
    async fn login(&self) -> String {
        let res = self.get("/login", &[]).await;
        assert_eq!(res.status(), StatusCode::OK);
        let anon = cookie(&res).expect("the login page starts a session");
        let csrf = field(&res.text().await.unwrap(), "csrf");
        let res =
            self.post("/login", &[("cookie", &anon)], form(&[("token", TOKEN), ("csrf", &csrf), ("next", "/")])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let session = cookie(&res).expect("a login sets the session cookie");
        assert_ne!(session, anon, "a login starts a new session");
        session
    }

    /// The detail page's form fields (csrf, uid, generation, round, digest).
    async fn form_fields(&self, name: &str, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let res = self.get(&format!("/requests/default/{name}"), headers).await;
        assert_eq!(res.status(), StatusCode::OK);
        let html = res.text().await.unwrap();
        ["csrf", "uid", "generation", "round", "digest"].iter().map(|f| (f.to_string(), field(&html, f))).collect()
    }

    /// Waits until the list (which follows the store's change feed) shows `name`.
    async fn until_listed(&self, cookie: &str, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let html = self.get("/", &[("cookie", cookie)]).await.text().await.unwrap();
            if html.contains(&format!("/{name}\"")) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never listed:\n{html}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn decisions(&self, r: &QueryRequest) -> Vec<Decision> {
        self.store.list_decisions(r.uid()).await.unwrap()
    }
}

fn with(fields: &[(String, String)], extra: &[(&str, &str)], drop: &[&str]) -> String {
    let mut all: Vec<(&str, &str)> =
        fields.iter().filter(|(k, _)| !drop.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (k, v) in extra {
        all.retain(|(key, _)| key != k);
        all.push((k, v));
    }
    form(&all)
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_and_write_nothing() {
    let f = fixture(token_mode("alice")).await;
    let r = awaiting(f.store.as_ref(), "q", "rita", spec("Which nations?")).await;

    let res = f.get("/", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login?next=%2F");
    let res = f.get("/requests/default/q", &[]).await;
    assert_eq!(res.headers()[LOCATION], "/login?next=%2Frequests%2Fdefault%2Fq");
    for path in ["/events", "/fragment/list", "/requests/default/q/fragment"] {
        assert_eq!(f.get(path, &[]).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A forged session cookie is no session.
    let forged = format!("sqlctl_session=abc.{}.{}.00", i64::MAX, hex::encode("alice"));
    assert_eq!(f.get("/events", &[("cookie", &forged)]).await.status(), StatusCode::UNAUTHORIZED);
    let body = form(&[("csrf", "x"), ("uid", r.uid()), ("generation", "1"), ("round", "1")]);
    let res = f.post("/requests/default/q/approve", &[], body).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("Nothing was written"));

    // A wrong token is refused (and starts no session); the right one starts a strict cookie session.
    let res = f.get("/login", &[]).await;
    let anon = cookie(&res).unwrap();
    let csrf = field(&res.text().await.unwrap(), "csrf");
    let started = Instant::now();
    let res =
        f.post("/login", &[("cookie", &anon)], form(&[("token", "wrong-token-of-length"), ("csrf", &csrf)])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= LOGIN_FAILURE_DELAY);
    assert!(res.text().await.unwrap().contains("Wrong token"));
    let res = f.post("/login", &[("cookie", &anon)], form(&[("token", TOKEN), ("csrf", "forged")])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "the login form has its own CSRF token");
    let res = f
        .post("/login", &[("cookie", &anon)], form(&[("token", TOKEN), ("csrf", &csrf), ("next", "//evil.example/")]))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/", "never an open redirect");
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains(TOKEN), "{set}");
    let session = cookie(&res).unwrap();
    assert_eq!(f.get("/", &[("cookie", &session)]).await.status(), StatusCode::OK);
    assert!(f.decisions(&r).await.is_empty());

    // Header mode: no header, no console.
    let h = fixture(header_mode()).await;
    let res = h.get("/", &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains(USER_HEADER));
    assert_eq!(h.get("/events", &[]).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token_and_a_same_origin_post() {
    let f = fixture(token_mode("alice")).await;
    let r = awaiting(f.store.as_ref(), "q", "rita", spec("Which nations?")).await;
    let session = f.login().await;
    let other = f.login().await;
    let fields = f.form_fields("q", &[("cookie", &session)]).await;
    let other_csrf = f.form_fields("q", &[("cookie", &other)]).await[0].1.clone();
    let approve = "/requests/default/q/approve";

    for (why, body) in [
        ("no token", with(&fields, &[], &["csrf"])),
        ("a wrong token", with(&fields, &[("csrf", "00")], &[])),
        ("another session's token", with(&fields, &[("csrf", &other_csrf)], &[])),
    ] {
        let res = f.post(approve, &[("cookie", &session)], body).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{why}");
        let text = res.text().await.unwrap();
        assert!(text.contains("security token") && text.contains("Nothing was written"), "{why}: {text}");
    }
    // The right token from another site.
    let mut rb = f.http.post(f.url(approve)).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    rb = rb.header(COOKIE, &session).header(ORIGIN, "https://evil.example");
    let res = rb.body(with(&fields, &[], &[])).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("evil.example"));
    // Logging out needs the token too.
    let res = f.post("/logout", &[("cookie", &session)], form(&[("csrf", "nope")])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(f.decisions(&r).await.is_empty(), "nothing was written");

    let res = f.post(approve, &[("cookie", &session)], with(&fields, &[("comment", "looks right")], &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/requests/default/q?recorded=approve");
    let d = f.decisions(&r).await;
    assert_eq!(d.len(), 1);
    let st = r.status.clone().unwrap();
    assert_eq!(
        (d[0].by.as_str(), d[0].source.as_str(), d[0].decision, d[0].comment.as_deref()),
        ("alice", "console", DecisionKind::Approve, Some("looks right"))
    );
    assert_eq!((d[0].generation, d[0].round, &d[0].sql_digest), (1, 1, &st.generated.unwrap().sql_digest));
    // The page now says so, and offers no second decision.
    let html = f.get("/requests/default/q?recorded=approve", &[("cookie", &session)]).await.text().await.unwrap();
    assert!(html.contains("Your approval was recorded") && html.contains("You decided <b>approve</b>"), "{html}");
    assert!(!html.contains("name=\"digest\""));

    let csrf = fields[0].1.clone();
    let res = f.post("/logout", &[("cookie", &session)], form(&[("csrf", &csrf)])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn the_trusted_header_names_the_decider_and_binds_the_csrf_token() {
    let f = fixture(header_mode()).await;
    let r = awaiting(f.store.as_ref(), "q", "rita", spec("Which nations?")).await;
    let res = f.get("/requests/default/q", &[(USER_HEADER, "bob@example.com")]).await;
    let session = cookie(&res).expect("a first visit starts a session for the CSRF token");
    let html = res.text().await.unwrap();
    assert!(html.contains("<span class=\"who\">bob@example.com</span>"));
    let fields: Vec<(String, String)> =
        ["csrf", "uid", "generation", "round", "digest"].iter().map(|k| (k.to_string(), field(&html, k))).collect();
    let refine = "/requests/default/q/refine";
    let body = with(&fields, &[("feedback", "only 1995")], &[]);

    // The same form with another user's header: the token belongs to bob.
    let res = f.post(refine, &[("cookie", &session), (USER_HEADER, "mallory")], body.clone()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Without the session cookie the token means nothing.
    let res = f.post(refine, &[(USER_HEADER, "bob@example.com")], body.clone()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Refine without feedback is refused by the console.
    let res = f.post(refine, &[("cookie", &session), (USER_HEADER, "bob@example.com")], with(&fields, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(f.decisions(&r).await.is_empty());

    let res = f.post(refine, &[("cookie", &session), (USER_HEADER, "bob@example.com")], body).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let d = f.decisions(&r).await;
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].by.as_str(), d[0].decision), ("bob@example.com", DecisionKind::Refine));
    assert_eq!(d[0].feedback.as_deref(), Some("only 1995"));
}

#[tokio::test]
async fn stale_forms_are_refused_and_write_nothing() {
    let f = fixture(token_mode("alice")).await;
    let r = awaiting(f.store.as_ref(), "q", "rita", spec("Which nations?")).await;
    let session = f.login().await;
    let c = [("cookie", session.as_str())];
    let approve = "/requests/default/q/approve";

    // The controller moved on to new SQL (a refine by someone else): round 2.
    let old = f.form_fields("q", &c).await;
    let r2 = set_sql(f.store.as_ref(), r.clone(), 2, "select n_name from nation where n_regionkey = 1").await;
    let res = f.post(approve, &c, with(&old, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let html = res.text().await.unwrap();
    assert!(html.contains("changed since you loaded the page") && html.contains("approval round 1 is now 2"), "{html}");
    assert!(html.contains("Nothing was written"));
    // The refusal shows what is there now, with the diff against the previous SQL.
    assert!(html.contains("n_regionkey") && html.contains("class=\"del\"") && html.contains("class=\"add\""), "{html}");

    // Same round, but the digest in the form is not the current one.
    let fresh = f.form_fields("q", &c).await;
    let res = f.post(approve, &c, with(&fresh, &[("digest", &"ab".repeat(32))], &[])).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // The spec changed (a new generation) while the page was open.
    let mut changed = r2.clone();
    changed.spec.question = Some("Which regions?".into());
    f.store.update_spec(&changed).await.unwrap();
    let res = f.post(approve, &c, with(&fresh, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("its spec changed (generation 1 is now 2)"));

    // Someone else's decision was projected: the request is Executing.
    let cur = f.store.get(&r.key()).await.unwrap().unwrap();
    let cur = set_sql(f.store.as_ref(), cur, 1, "select 1").await;
    let fresh = f.form_fields("q", &c).await;
    let mut moved = cur.clone();
    moved.status.as_mut().unwrap().phase = Phase::Executing;
    f.store.update_status(&moved, None).await.unwrap();
    let res = f.post("/requests/default/q/reject", &c, with(&fresh, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("it is Executing now"));

    // Deleted and created again under the same name: a new uid.
    f.store.delete(&r.key(), true).await.unwrap();
    awaiting(f.store.as_ref(), "q", "rita", spec("Which nations?")).await;
    let res = f.post(approve, &c, with(&old, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("deleted and created again"));

    let recreated = f.store.get(&r.key()).await.unwrap().unwrap();
    assert!(f.decisions(&r).await.is_empty() && f.decisions(&recreated).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn policy_refusals_are_shown_and_write_nothing() {
    let f = fixture(header_mode()).await;
    f.store.put_policy(&Policy { four_eyes: true, ..Default::default() }, None).await.unwrap();
    let r = awaiting(f.store.as_ref(), "q", "alice", spec("Which nations?")).await;
    let alice = [(USER_HEADER, "alice")];
    let res = f.get("/requests/default/q", &alice).await;
    let session = cookie(&res).unwrap();
    let html = res.text().await.unwrap();
    assert!(html.contains("Four-eyes policy: you requested this"), "the page warns before the click");
    let fields: Vec<(String, String)> =
        ["csrf", "uid", "generation", "round", "digest"].iter().map(|k| (k.to_string(), field(&html, k))).collect();
    let h = [("cookie", session.as_str()), (USER_HEADER, "alice")];
    let res = f.post("/requests/default/q/approve", &h, with(&fields, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let text = res.text().await.unwrap();
    assert!(text.contains("four-eyes policy: alice requested q and may not approve it"), "{text}");
    assert!(text.contains("Nothing was written"));
    assert!(f.decisions(&r).await.is_empty());

    // An allow-list that leaves bob out.
    let policy = Policy { approvers: vec!["carol".into()], ..Default::default() };
    f.store.put_policy(&policy, None).await.unwrap();
    let res = f.get("/requests/default/q", &[(USER_HEADER, "bob")]).await;
    let session = cookie(&res).unwrap();
    let html = res.text().await.unwrap();
    assert!(html.contains("You (bob) are not among the allowed deciders"));
    let fields: Vec<(String, String)> =
        ["csrf", "uid", "generation", "round", "digest"].iter().map(|k| (k.to_string(), field(&html, k))).collect();
    let h = [("cookie", session.as_str()), (USER_HEADER, "bob")];
    let res = f.post("/requests/default/q/reject", &h, with(&fields, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("bob may not decide on q: allowed deciders are carol"));
    assert!(f.decisions(&r).await.is_empty());
}

#[tokio::test]
async fn an_over_budget_approval_needs_the_explicit_checkbox() {
    let f = fixture(token_mode("alice")).await;
    let mut s = spec("Everything, please");
    s.limits.max_bytes_scanned = Some(ByteSize::parse("1MiB").unwrap());
    let r = awaiting(f.store.as_ref(), "big", "rita", s).await;
    let mut r2 = r.clone();
    r2.status.as_mut().unwrap().estimate = Some(Estimate { bytes: 10 << 20, cost_usd: 0.05, method: "footers".into() });
    f.store.update_status(&r2, None).await.unwrap();
    let session = f.login().await;
    let c = [("cookie", session.as_str())];
    let html = f.get("/requests/default/big", &c).await.text().await.unwrap();
    assert!(html.contains("name=\"allow_over_budget\"") && html.contains("10.0 MiB"), "{html}");
    let fields = f.form_fields("big", &c).await;
    let res = f.post("/requests/default/big/approve", &c, with(&fields, &[], &[])).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("Allow over budget"));
    assert!(f.decisions(&r).await.is_empty());
    // Only the policy's over-budget approvers may tick it.
    let policy = Policy { over_budget_approvers: vec!["carol".into()], ..Default::default() };
    f.store.put_policy(&policy, None).await.unwrap();
    let html = f.get("/requests/default/big", &c).await.text().await.unwrap();
    assert!(html.contains("Only carol may approve over the budget"), "{html}");
    let res = f.post("/requests/default/big/approve", &c, with(&fields, &[("allow_over_budget", "1")], &[])).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("overBudgetApprovers are carol"));
    assert!(f.decisions(&r).await.is_empty());
    f.store.put_policy(&Policy::default(), None).await.unwrap();
    let res = f.post("/requests/default/big/approve", &c, with(&fields, &[("allow_over_budget", "1")], &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let d = f.decisions(&r).await;
    assert!(d.len() == 1 && d[0].allow_over_budget);
}

#[tokio::test]
async fn pages_escape_what_they_show_and_send_security_headers() {
    let f = fixture(token_mode("alice")).await;
    awaiting(f.store.as_ref(), "xss", "<b>rita</b>", spec("<script>alert(1)</script> and \"quotes\"")).await;
    let session = f.login().await;
    let c = [("cookie", session.as_str())];
    f.until_listed(&session, "xss").await;
    for path in ["/", "/requests/default/xss"] {
        let res = f.get(path, &c).await;
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        let html = res.text().await.unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<b>rita</b>"));
        assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");
    }
    let html = f.get("/requests/default/xss", &c).await.text().await.unwrap();
    assert!(html.contains("<span class=\"kw\">select</span> n_name <span class=\"kw\">from</span> nation"), "{html}");
    assert!(html.contains("Lists nation names.") && html.contains("90%"));
    let js = f.get("/static/console.js", &[]).await;
    assert_eq!(js.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(f.get("/nope", &c).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_list_filters_by_phase_and_follows_the_store_live() {
    let f = fixture(token_mode("alice")).await;
    let a = awaiting(f.store.as_ref(), "waiting", "rita", spec("Which nations?")).await;
    let mut done = awaiting(f.store.as_ref(), "finished", "rita", spec("How many?")).await;
    done.status.as_mut().unwrap().phase = Phase::Done;
    f.store.update_status(&done, None).await.unwrap();
    let session = f.login().await;
    let c = [("cookie", session.as_str())];

    // Subscribe, then write: the key arrives as an event.
    let mut events = f.get("/events", &c).await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()[CONTENT_TYPE], "text/event-stream");
    awaiting(f.store.as_ref(), "fresh", "rita", spec("Which regions?")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !seen.contains("data: default/fresh") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.chunk()).await {
            Ok(Ok(Some(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("no change event for default/fresh (got {seen:?}, then {other:?})"),
        }
    }
    assert!(seen.contains("event: change"));

    let html = f.get("/", &c).await.text().await.unwrap();
    for name in ["waiting", "finished", "fresh"] {
        assert!(html.contains(&format!("/requests/default/{name}\"")), "{name} listed");
    }
    let html = f.get("/?phase=AwaitingApproval", &c).await.text().await.unwrap();
    assert!(html.contains("/requests/default/waiting\"") && !html.contains("/requests/default/finished\""));
    assert!(html.contains("AwaitingApproval<span class=\"count\">2</span>"), "{html}");
    let frag = f.get("/fragment/list?phase=Done", &c).await.text().await.unwrap();
    assert!(frag.starts_with("<div id=\"list\">") && frag.contains("/requests/default/finished\""));
    assert!(!frag.contains("<html"), "a fragment, not a page");

    // Deleting a request removes it from the list.
    f.store.delete(&a.key(), true).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let html = f.get("/", &c).await.text().await.unwrap();
        if !html.contains("/requests/default/waiting\"") {
            break;
        }
        assert!(Instant::now() < deadline, "deleted request still listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The detail fragment of a deleted request says so.
    let res = f.get("/requests/default/waiting/fragment", &c).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("was deleted"));
}

#[tokio::test]
async fn the_list_pages_through_many_requests() {
    let f = fixture(token_mode("alice")).await;
    for i in 0..(pages::PAGE_SIZE + 5) {
        let r = QueryRequest { spec: spec("How many?"), ..QueryRequest::new(format!("r{i:03}"), "") }
            .with_namespace("team");
        f.store.create(r).await.unwrap();
    }
    // The index was loaded at start, before these: wait for the change feed.
    let session = f.login().await;
    let c = [("cookie", session.as_str())];
    let deadline = Instant::now() + Duration::from_secs(10);
    let html = loop {
        let html = f.get("/?namespace=team", &c).await.text().await.unwrap();
        if html.contains(&format!("of {}", pages::PAGE_SIZE + 5)) {
            break html;
        }
        assert!(Instant::now() < deadline, "{html}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(html.contains("1–100 of 105") && html.contains("href=\"/?namespace=team&amp;page=2\""), "{html}");
    let html = f.get("/?namespace=team&page=2", &c).await.text().await.unwrap();
    assert!(html.contains("101–105 of 105") && html.contains("rel=\"prev\""));
    let html = f.get("/?namespace=other", &c).await.text().await.unwrap();
    assert!(html.contains("No requests"));
}

#[tokio::test]
async fn a_finished_request_shows_its_preview_and_chart_as_an_image() {
    let f = fixture(token_mode("alice")).await;
    let results = f.dir.path().join("results/default/charted");
    std::fs::create_dir_all(&results).unwrap();
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><script>alert(1)</script><rect width=\"5\" height=\"5\"/></svg>";
    std::fs::write(results.join("1-1.svg"), svg).unwrap();
    std::fs::write(results.join("1-1.csv"), "n\n25\n").unwrap();
    for (name, chart) in
        [("charted", results.join("1-1.svg").display().to_string()), ("elsewhere", "/etc/passwd".to_string())]
    {
        let mut r = awaiting(f.store.as_ref(), name, "rita", spec("How many nations?")).await;
        let st = r.status.as_mut().unwrap();
        st.phase = Phase::Done;
        st.execution = Some(Execution {
            token: "t".into(),
            attempt: 1,
            state: "Succeeded".into(),
            rows: Some(1),
            output_location: Some(results.join("1-1.csv").display().to_string()),
            chart_location: Some(chart),
            preview: Some(Preview {
                columns: vec!["n".into()],
                rows: vec![vec![Some("25".into())], vec![None]],
                truncated: false,
            }),
            ..Default::default()
        });
        f.store.update_status(&r, None).await.unwrap();
    }
    let session = f.login().await;
    let c = [("cookie", session.as_str())];
    let html = f.get("/requests/default/charted", &c).await.text().await.unwrap();
    assert!(
        html.contains("<th>n</th></tr></thead><tbody><tr><td>25</td></tr><tr><td class=\"null\">NULL</td>"),
        "{html}"
    );
    let img = format!(
        "<img alt=\"chart of the result\" src=\"data:image/svg+xml;base64,{}\">",
        pages::base64(svg.as_bytes())
    );
    assert!(html.contains(&img), "the chart is an image (its script never runs): {html}");
    assert!(!html.contains("<svg") && !html.contains("alert(1)"));
    assert!(!html.contains("name=\"digest\""), "no decision forms on a finished request");
    let html = f.get("/requests/default/elsewhere", &c).await.text().await.unwrap();
    assert!(html.contains("A chart was drawn at <code>/etc/passwd</code>, but this console cannot read it"), "{html}");
    assert!(!html.contains("root:"), "nothing outside the results is read");
}

/// A request that ran `sql`, approved by `by` (Done at generation 1).
async fn done(store: &dyn Store, name: &str, by: &str, sql: &str) -> QueryRequest {
    let r = awaiting(store, name, "rita", spec("Which nations are in region 1?")).await;
    let mut r = set_sql(store, r, 1, sql).await;
    let mut st = r.status.take().unwrap();
    let g = st.generated.clone().unwrap();
    st.phase = Phase::Done;
    st.approval = Some(ApprovalStatus {
        decision: DecisionKind::Approve,
        by: by.into(),
        at: chrono::Utc::now(),
        generation: 1,
        sql_digest: g.sql_digest,
        comment: None,
        decision_id: "d".into(),
        allow_over_budget: false,
    });
    r.status = Some(st);
    store.update_status(&r, None).await.unwrap()
}

#[tokio::test]
async fn a_done_request_can_be_verified_from_its_page_by_an_approver_only() {
    let f = fixture(header_mode()).await;
    let policy = Policy {
        databases: [("tpch".to_string(), DatabasePolicy { approvers: vec!["alice".into()] })].into(),
        ..Default::default()
    };
    f.store.put_policy(&policy, None).await.unwrap();
    let r = done(f.store.as_ref(), "q", "alice", "SELECT n_name FROM nation WHERE n_regionkey = 1 LIMIT 3").await;

    // bob may not approve on tpch: no form, a note, and a forged post is refused.
    let html = f.get("/requests/default/q", &[(USER_HEADER, "bob")]).await.text().await.unwrap();
    assert!(!html.contains("/q/verify") && html.contains("may verify queries there"), "{html}");
    // Bob's session token, from a page that has forms for him.
    awaiting(f.store.as_ref(), "other", "rita", spec("Which nations?")).await;
    let res = f.get("/requests/default/other", &[(USER_HEADER, "bob")]).await;
    let bob_session = cookie(&res).unwrap();
    let bob_csrf = field(&res.text().await.unwrap(), "csrf");
    let bob = [("cookie", bob_session.as_str()), (USER_HEADER, "bob")];
    let fields = |csrf: &str| {
        form(&[
            ("csrf", csrf),
            ("uid", r.uid()),
            ("generation", "1"),
            ("digest", &r.status.as_ref().unwrap().generated.as_ref().unwrap().sql_digest),
            ("name", "nations-of-region"),
            ("question", "Which nations are in region 1?"),
        ])
    };
    let res = f.post("/requests/default/q/verify", &bob, fields(&bob_csrf)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(
        f.store
            .get_object(ObjectKind::VerifiedQuery, &ObjectKey::new("default", "nations-of-region"))
            .await
            .unwrap()
            .is_none()
    );

    // alice sees the form; a post without the session's token is refused; with it, the
    // verified query is created with the approver as verifier and the request as provenance.
    let res = f.get("/requests/default/q", &[(USER_HEADER, "alice")]).await;
    let session = cookie(&res).unwrap();
    let alice = [("cookie", session.as_str()), (USER_HEADER, "alice")];
    let html = res.text().await.unwrap();
    assert!(html.contains("action=\"/requests/default/q/verify\""), "{html}");
    let csrf = field(&html, "csrf");
    let res = f.post("/requests/default/q/verify", &alice, fields("forged")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = f.post("/requests/default/q/verify", &alice, fields(&csrf)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    assert_eq!(res.headers()[LOCATION], "/requests/default/q?verified=nations-of-region");
    let vq = f
        .store
        .get_object(ObjectKind::VerifiedQuery, &ObjectKey::new("default", "nations-of-region"))
        .await
        .unwrap()
        .unwrap();
    let vq = vq.as_verified_query().unwrap();
    assert_eq!(vq.spec.verified_by.as_deref(), Some("alice"));
    assert_eq!(vq.spec.provenance.as_ref().unwrap().uid, r.uid());
    assert_eq!(vq.spec.sql, "SELECT n_name FROM nation WHERE n_regionkey = :n_regionkey LIMIT :limit");
    // The same name again: a conflict, nothing overwritten.
    let res = f.post("/requests/default/q/verify", &alice, fields(&csrf)).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("already exists"));
}
