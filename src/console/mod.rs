//! The approval web console: a small server-rendered app (axum, no front-end build) where
//! people review and decide on requests. `sqlctl console`, or `sqlctl controller
//! --console-addr` beside the controller.
//!
//! # Pages
//! | route | what |
//! |---|---|
//! | `GET /?phase=&namespace=&page=` | requests by phase, newest first, 100 per page |
//! | `GET /requests/{namespace}/{name}` | question, highlighted SQL, diff against the previous SQL, explanation, confidence, estimate, decision forms, result preview and chart, history |
//! | `POST /requests/{namespace}/{name}/approve` · `/refine` · `/reject` | a decision |
//! | `POST /requests/{namespace}/{name}/verify` | a Done request saved as a `VerifiedQuery` (as `sqlctl verify`) |
//! | `GET /events` | server-sent events: the key of each request that changed |
//! | `GET /fragment/list`, `GET /requests/{namespace}/{name}/fragment` | the live parts `console.js` swaps in |
//! | `GET /login`, `POST /login`, `POST /logout` | token sessions |
//!
//! # One decision path
//! A form carries the exact state its page showed — `uid`, `generation`, approval `round` and
//! `sqlDigest` — as hidden fields. On submit the console re-reads the record and refuses (409,
//! nothing written) when any of them moved on: the request was recreated, its spec changed, it
//! has new SQL, or it left AwaitingApproval. Otherwise the decision goes through
//! [`crate::approval::submit`], the CLI's path: bound to that state, checked against the stored
//! policy (allow-lists, four-eyes) and written as a create-if-absent decision record that the
//! controller re-checks before projecting. Identity and CSRF: see [`auth`].
//!
//! # Live updates
//! A background task follows the store's change feed into an in-memory [`index`] (which the
//! list renders from, so a list of 10,000 requests costs no store read) and broadcasts changed
//! keys to `/events`. On a change the page fetches its fragment: status and history are
//! replaced; the review section (SQL and forms) is replaced only when it holds no form, so a
//! reviewer never has the SQL change under the button they are about to press — they see a
//! banner asking them to reload instead, and the server refuses the stale form anyway.

pub mod auth;
mod highlight;
mod html;
mod index;
mod pages;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

pub use auth::{AuthMode, ServerKey};
use auth::{Session, clear_cookie, header_user, is_secure, origin_refusal, session_from, token_matches};
use html::{Layout, PageKind, url_encode};
use index::Index;
use pages::{Chart, Detail, Flash, ListFilter};

use crate::approval::{self, DecisionInput, Refusal, SubmitError};
use crate::results::ResultStore;
use crate::spec::{DecisionKind, MAX_QUESTION_CHARS, ObjectKey, Phase, QueryRequest};
use crate::store::{Store, StoreError};

/// How often the console reads the store's change feed (SQLite: one cheap query).
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);
/// How often the whole list is read again on SQLite.
pub const DEFAULT_RELIST: Duration = Duration::from_secs(60);
/// On DynamoDB, where every read costs capacity: the change feed every second and a full re-list
/// every 15 minutes.
pub const AWS_POLL: Duration = Duration::from_secs(1);
pub const AWS_RELIST: Duration = Duration::from_secs(15 * 60);
/// Largest chart the detail page embeds.
const MAX_CHART_BYTES: u64 = 2 << 20;
/// Pause after a wrong token, so the login form is a slow oracle.
const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(500);

const CONSOLE_JS: &str = include_str!("console.js");
const CONSOLE_CSS: &str = include_str!("console.css");

/// How the console is set up.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    pub auth: AuthMode,
    /// Signs sessions and CSRF tokens.
    pub key: ServerKey,
    /// How often the store's change feed is read.
    pub poll: Duration,
    /// How often the whole list is read again (a safety net under the change feed; on DynamoDB
    /// every read costs capacity).
    pub relist: Duration,
}

/// What the console needs from the rest of sqlctl.
pub struct Parts {
    pub store: Arc<dyn Store>,
    /// Where results live, to read their charts (the console never starts a query).
    pub results: Arc<dyn ResultStore>,
    pub config: ConsoleConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("loading requests for the console: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

struct Inner {
    store: Arc<dyn Store>,
    results: Arc<dyn ResultStore>,
    config: ConsoleConfig,
    index: Arc<Index>,
    shutdown: watch::Receiver<bool>,
}

type App = Arc<Inner>;

/// Loads the index, starts following the store, binds `addr` and serves until `shutdown`
/// (open event streams end with it, so the drain is prompt). Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    parts: Parts,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ConsoleError> {
    let (index, cursor) = Index::load(parts.store.as_ref()).await?;
    let index = Arc::new(index);
    tokio::spawn(index.clone().follow(
        parts.store.clone(),
        cursor,
        parts.config.poll,
        parts.config.relist,
        shutdown.clone(),
    ));
    let app: App = Arc::new(Inner {
        store: parts.store,
        results: parts.results,
        config: parts.config,
        index,
        shutdown: shutdown.clone(),
    });
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ConsoleError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| ConsoleError::Bind { addr, source })?;
    let mut stop = shutdown;
    let handle = tokio::spawn(async move {
        let served = axum::serve(listener, router(app))
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|v| *v).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "console server stopped");
        }
    });
    Ok((local, handle))
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/fragment/list", get(list_fragment))
        .route("/requests/{namespace}/{name}", get(detail_page))
        .route("/requests/{namespace}/{name}/fragment", get(detail_fragment))
        .route("/requests/{namespace}/{name}/approve", post(|s, p, h, f| decide(s, p, h, f, DecisionKind::Approve)))
        .route("/requests/{namespace}/{name}/refine", post(|s, p, h, f| decide(s, p, h, f, DecisionKind::Refine)))
        .route("/requests/{namespace}/{name}/reject", post(|s, p, h, f| decide(s, p, h, f, DecisionKind::Reject)))
        .route("/requests/{namespace}/{name}/verify", post(verify))
        .route("/events", get(events))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/console.js", get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }))
        .route("/static/console.css", get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Headers on every response: a CSP without inline script or style (the page uses neither),
/// no framing, no sniffing, no caching of pages that show who decided what.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The authenticated user of a request and their session.
struct Who {
    user: String,
    session: Session,
    /// A session started by this request (header mode), to be set on the response.
    new_cookie: Option<String>,
}

impl Who {
    fn csrf(&self, app: &Inner) -> String {
        self.session.csrf(&app.config.key, &self.user)
    }

    fn logout_csrf(&self, app: &Inner) -> Option<String> {
        matches!(app.config.auth, AuthMode::Token { .. }).then(|| self.csrf(app))
    }

    /// An HTML page for this user.
    fn page(
        &self,
        app: &Inner,
        status: StatusCode,
        title: &str,
        kind: PageKind,
        key: Option<&str>,
        body: &str,
    ) -> Response {
        let logout = self.logout_csrf(app);
        let layout = Layout { title, kind, key, user: Some(&self.user), logout_csrf: logout.as_deref() };
        with_cookie(respond(status, html::page(&layout, body)), self.new_cookie.as_deref())
    }
}

fn respond(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn with_cookie(mut res: Response, cookie: Option<&str>) -> Response {
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// A page for someone not (yet) known: login, errors before authentication.
fn anonymous_page(status: StatusCode, title: &str, body: &str) -> Response {
    let layout = Layout { title, kind: PageKind::Other, key: None, user: None, logout_csrf: None };
    respond(status, html::page(&layout, body))
}

fn message_body(kind: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let mut body = String::new();
    html::banner(&mut body, kind, text);
    if let Some((href, label)) = link {
        body.push_str("<p><a href=\"");
        html::push_escaped(&mut body, href);
        body.push_str("\">");
        html::push_escaped(&mut body, label);
        body.push_str("</a></p>");
    }
    body
}

impl Inner {
    /// Who is asking, or why nobody is.
    fn identify(&self, headers: &HeaderMap) -> Result<Who, String> {
        let key = &self.config.key;
        match &self.config.auth {
            AuthMode::Header(name) => {
                let user = header_user(headers, name).ok_or_else(|| {
                    format!(
                        "no user identity: this console expects the authenticating proxy in front of it to set the {name} header"
                    )
                })?;
                Ok(match session_from(headers, key) {
                    Some(session) => Who { user, session, new_cookie: None },
                    None => {
                        let session = Session::new(None);
                        let cookie = session.set_cookie(key, is_secure(headers));
                        Who { user, session, new_cookie: Some(cookie) }
                    }
                })
            }
            AuthMode::Token { user, .. } => match session_from(headers, key) {
                Some(s) if s.user.as_deref() == Some(user.as_str()) => {
                    Ok(Who { user: user.clone(), session: s, new_cookie: None })
                }
                _ => Err("not logged in (or the session expired): log in with the console token".into()),
            },
        }
    }

    /// The answer to an unauthenticated page view: the login form (token mode) or a 401.
    fn unauthenticated_page(&self, why: &str, next: &str) -> Response {
        match self.config.auth {
            AuthMode::Token { .. } => see_other(&format!("/login?next={}", url_encode(next))),
            AuthMode::Header(_) => {
                anonymous_page(StatusCode::UNAUTHORIZED, "Not signed in", &message_body("error", why, None))
            }
        }
    }

    /// Reads what the detail page shows besides the record.
    async fn detail<'a>(
        &self,
        r: &'a QueryRequest,
        who: &'a Who,
        csrf: &'a str,
        flash: Option<Flash>,
    ) -> Result<Detail<'a>, StoreError> {
        let decisions = self.store.list_decisions(r.uid()).await?;
        let policy = self.store.get_policy().await?.unwrap_or_default();
        Ok(Detail { r, decisions, policy, user: &who.user, csrf, chart: self.chart(r).await, flash })
    }

    /// The result's chart, read from the result store.
    async fn chart(&self, r: &QueryRequest) -> Option<Chart> {
        let x = r.status.as_ref().filter(|s| s.phase == Phase::Done)?.execution.as_ref()?;
        let location = x.chart_location.clone()?;
        let unreadable = |why: String| Some(Chart::Unreadable { location: location.clone(), why });
        match self.results.read(&location, Some(MAX_CHART_BYTES)).await {
            Ok(None) => unreadable(format!("it is larger than {} KiB", MAX_CHART_BYTES >> 10)),
            Ok(Some(b)) => {
                let head = String::from_utf8_lossy(&b[..b.len().min(256)]).trim_start().to_ascii_lowercase();
                if head.starts_with("<svg") || head.starts_with("<?xml") {
                    Some(Chart::Svg(b))
                } else {
                    unreadable("it is not an SVG image".into())
                }
            }
            Err(e) => unreadable(e.to_string()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    phase: Option<String>,
    namespace: Option<String>,
    page: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> ListFilter {
        ListFilter {
            phase: self.phase.as_deref().and_then(Phase::parse),
            namespace: self.namespace.clone().filter(|s| !s.is_empty()),
            page: self.page.as_deref().and_then(|p| p.parse().ok()).unwrap_or(1),
        }
    }

    fn path(&self) -> String {
        let mut q = Vec::new();
        for (k, v) in [("phase", &self.phase), ("namespace", &self.namespace), ("page", &self.page)] {
            if let Some(v) = v {
                q.push(format!("{k}={}", url_encode(v)));
            }
        }
        if q.is_empty() { "/".into() } else { format!("/?{}", q.join("&")) }
    }
}

async fn list_page(State(app): State<App>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let who = match app.identify(&headers) {
        Ok(w) => w,
        Err(why) => return app.unauthenticated_page(&why, &q.path()),
    };
    let mut body = String::with_capacity(64 * 1024);
    body.push_str("<h1>Requests</h1>");
    pages::list(&mut body, &app.index.snapshot(), &q.filter(), &Utc::now());
    who.page(&app, StatusCode::OK, "Requests", PageKind::List, None, &body)
}

async fn list_fragment(State(app): State<App>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let who = match app.identify(&headers) {
        Ok(w) => w,
        Err(why) => return (StatusCode::UNAUTHORIZED, why).into_response(),
    };
    let mut body = String::with_capacity(64 * 1024);
    pages::list(&mut body, &app.index.snapshot(), &q.filter(), &Utc::now());
    with_cookie(respond(StatusCode::OK, body), who.new_cookie.as_deref())
}

#[derive(Debug, Default, Deserialize)]
struct DetailQuery {
    /// Set by the redirect after a decision was recorded (post/redirect/get).
    recorded: Option<String>,
    verified: Option<String>,
}

async fn detail_page(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<DetailQuery>,
) -> Response {
    let key = ObjectKey::new(namespace, name);
    let who = match app.identify(&headers) {
        Ok(w) => w,
        Err(why) => {
            return app.unauthenticated_page(
                &why,
                &format!("/requests/{}/{}", url_encode(&key.namespace), url_encode(&key.name)),
            );
        }
    };
    if let Some(vq) = q.verified.as_deref() {
        let flash = Flash {
            kind: "ok",
            text: format!("Saved as verifiedquery {}/{vq} (sqlctl describe vq {vq}).", key.namespace),
        };
        return render_detail(&app, &who, &key, StatusCode::OK, Some(flash)).await;
    }
    let flash = q.recorded.as_deref().and_then(DecisionKind::parse).map(|k| Flash {
        kind: "ok",
        text: match k {
            DecisionKind::Approve => "Your approval was recorded: the controller runs the query next.",
            DecisionKind::Refine => "Your feedback was recorded: the controller generates new SQL for you to review.",
            DecisionKind::Reject => "Your rejection was recorded.",
        }
        .to_string(),
    });
    render_detail(&app, &who, &key, StatusCode::OK, flash).await
}

/// The detail page of `key` (or a page saying it is gone) with an optional message on top.
async fn render_detail(app: &Inner, who: &Who, key: &ObjectKey, status: StatusCode, flash: Option<Flash>) -> Response {
    let title = key.to_string();
    let r = match app.store.get(key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let mut text = format!("{key} does not exist (it was deleted, or never created).");
            if let Some(f) = &flash {
                text = format!("{} {text}", f.text);
            }
            let body = message_body("error", &text, Some(("/", "All requests")));
            return who.page(app, StatusCode::NOT_FOUND, &title, PageKind::Other, None, &body);
        }
        Err(e) => return store_unavailable(app, who, &e),
    };
    let csrf = who.csrf(app);
    let detail = match app.detail(&r, who, &csrf, flash).await {
        Ok(d) => d,
        Err(e) => return store_unavailable(app, who, &e),
    };
    who.page(app, status, &title, PageKind::Detail, Some(&title), &detail.page())
}

fn store_unavailable(app: &Inner, who: &Who, e: &StoreError) -> Response {
    tracing::warn!(error = %e, "console: store read failed");
    let body = message_body("error", &format!("The store could not be read: {e}. Try again shortly."), None);
    who.page(app, StatusCode::SERVICE_UNAVAILABLE, "Unavailable", PageKind::Other, None, &body)
}

async fn detail_fragment(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let who = match app.identify(&headers) {
        Ok(w) => w,
        Err(why) => return (StatusCode::UNAUTHORIZED, why).into_response(),
    };
    let key = ObjectKey::new(namespace, name);
    let r = match app.store.get(&key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Empty sections with no binding: an open form shows as stale, the rest clears.
            let body = format!(
                "<section id=\"status\"><div class=\"banner error\">{} was deleted.</div></section>\
<section id=\"review\" data-binding=\"\" data-decidable=\"0\"></section><section id=\"trail\"></section>",
                html::Esc(&key.to_string())
            );
            return respond(StatusCode::NOT_FOUND, body);
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let csrf = who.csrf(&app);
    match app.detail(&r, &who, &csrf, None).await {
        Ok(d) => with_cookie(respond(StatusCode::OK, d.fragment()), who.new_cookie.as_deref()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// A posted decision form. Every field is optional so that a missing one is refused by the
/// console with a reason rather than by the form parser.
#[derive(Debug, Default, Deserialize)]
struct DecideForm {
    csrf: Option<String>,
    uid: Option<String>,
    generation: Option<String>,
    round: Option<String>,
    digest: Option<String>,
    comment: Option<String>,
    reason: Option<String>,
    feedback: Option<String>,
    allow_over_budget: Option<String>,
}

/// Why the record no longer matches the form, if it does not.
fn staleness(r: &QueryRequest, f: &DecideForm) -> Option<String> {
    let st = r.status.clone().unwrap_or_default();
    let digest = st.generated.as_ref().map(|g| g.sql_digest.as_str()).unwrap_or("");
    if f.uid.as_deref() != Some(r.uid()) {
        return Some("it was deleted and created again".into());
    }
    if f.generation.as_deref() != Some(r.generation().to_string().as_str()) {
        return Some(format!(
            "its spec changed (generation {} is now {})",
            f.generation.as_deref().unwrap_or("?"),
            r.generation()
        ));
    }
    if f.round.as_deref() != Some(st.approval_round.to_string().as_str()) {
        return Some(format!(
            "it has new SQL (approval round {} is now {})",
            f.round.as_deref().unwrap_or("?"),
            st.approval_round
        ));
    }
    if f.digest.as_deref() != Some(digest) {
        return Some("its SQL changed (a different digest)".into());
    }
    if st.phase != Phase::AwaitingApproval {
        let by = st.approval.as_ref().map(|a| format!(" ({} by {})", a.decision.as_str(), a.by)).unwrap_or_default();
        return Some(format!("it is {} now{by}", st.phase));
    }
    None
}

async fn decide(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<DecideForm>,
    kind: DecisionKind,
) -> Response {
    let key = ObjectKey::new(namespace, name);
    let detail_path = format!("/requests/{}/{}", url_encode(&key.namespace), url_encode(&key.name));
    let who = match app.identify(&headers) {
        Ok(w) => w,
        Err(why) => {
            let body = message_body(
                "error",
                &format!("Refused: {why}. Nothing was written."),
                matches!(app.config.auth, AuthMode::Token { .. }).then_some(("/login", "Log in")),
            );
            return anonymous_page(StatusCode::UNAUTHORIZED, "Not signed in", &body);
        }
    };
    let forbidden = |why: String| {
        let body = message_body(
            "error",
            &format!("Refused: {why}. Nothing was written."),
            Some((&detail_path, "Back to the request")),
        );
        who.page(&app, StatusCode::FORBIDDEN, "Refused", PageKind::Other, None, &body)
    };
    if let Some(why) = origin_refusal(&headers) {
        return forbidden(why);
    }
    if !form.csrf.as_deref().is_some_and(|t| who.session.csrf_ok(&app.config.key, &who.user, t)) {
        return forbidden(
            "the form's security token is missing or does not belong to this session (the console restarted, or you \
logged in again since the page was loaded); reload the page and decide again"
                .into(),
        );
    }
    let (app_ref, who_ref, key_ref) = (&*app, &who, &key);
    let refuse = move |status: StatusCode, text: String| async move {
        let flash = Flash { kind: "error", text: format!("Refused: {text} Nothing was written.") };
        render_detail(app_ref, who_ref, key_ref, status, Some(flash)).await
    };
    let r = match app.store.get(&key).await {
        Ok(Some(r)) => r,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, format!("{key} no longer exists.")).await,
        Err(e) => return store_unavailable(&app, &who, &e),
    };
    if let Some(why) = staleness(&r, &form) {
        return refuse(
            StatusCode::CONFLICT,
            format!("{key} changed since you loaded the page: {why}. Review what is there now below."),
        )
        .await;
    }
    let feedback = form.feedback.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    if kind == DecisionKind::Refine {
        match &feedback {
            None => {
                return refuse(StatusCode::BAD_REQUEST, "refine needs feedback saying what should change.".into())
                    .await;
            }
            Some(f) if f.chars().count() > MAX_QUESTION_CHARS => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the feedback is longer than {MAX_QUESTION_CHARS} characters."),
                )
                .await;
            }
            Some(_) => {}
        }
    }
    let allow_over_budget = form.allow_over_budget.as_deref().is_some_and(|v| !v.is_empty() && v != "0");
    if kind == DecisionKind::Approve
        && !allow_over_budget
        && let Some(why) = pages::over_budget(&r)
    {
        return refuse(
            StatusCode::CONFLICT,
            format!("{why}; tick \u{201c}Allow over budget\u{201d} to approve it anyway."),
        )
        .await;
    }
    let bounded =
        |s: Option<String>| s.map(|s| s.trim().chars().take(1000).collect::<String>()).filter(|s| !s.is_empty());
    let input = DecisionInput {
        decision: kind,
        by: who.user.clone(),
        digest: form.digest.clone(),
        feedback: if kind == DecisionKind::Refine { feedback } else { None },
        comment: bounded(if kind == DecisionKind::Reject { form.reason.clone() } else { form.comment.clone() }),
        source: "console".into(),
        allow_over_budget: kind == DecisionKind::Approve && allow_over_budget,
    };
    match approval::submit(app.store.as_ref(), &r, &input).await {
        Ok(d) => {
            tracing::info!(name = %key, by = %d.by, decision = d.decision.as_str(), generation = d.generation, round = d.round, "console: decision recorded");
            with_cookie(see_other(&format!("{detail_path}?recorded={}", kind.as_str())), who.new_cookie.as_deref())
        }
        Err(SubmitError::Refused(why)) => {
            let status = match why {
                Refusal::NotAllowed { .. } | Refusal::FourEyes { .. } | Refusal::OverBudgetNotAllowed { .. } => {
                    StatusCode::FORBIDDEN
                }
                Refusal::EmptyFeedback | Refusal::RefineHandWritten { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            refuse(status, format!("{why}.")).await
        }
        Err(SubmitError::Store(e)) => {
            tracing::warn!(name = %key, error = %e, "console: writing a decision failed");
            let text = format!(
                "The store failed while recording the decision ({e}); it may or may not have been written. Reload \
the request: a recorded decision shows under \u{201c}Decisions not yet applied\u{201d} or in the history."
            );
            let body = message_body("error", &text, Some((&detail_path, "Reload the request")));
            who.page(&app, StatusCode::SERVICE_UNAVAILABLE, "Unavailable", PageKind::Other, None, &body)
        }
    }
}

/// A posted Verify form.
#[derive(Debug, Default, Deserialize)]
struct VerifyForm {
    csrf: Option<String>,
    uid: Option<String>,
    generation: Option<String>,
    digest: Option<String>,
    name: Option<String>,
    question: Option<String>,
}

/// `POST …/verify`: the request saved as a `VerifiedQuery`, through the same
/// [`approval::verify::build`] as `sqlctl verify` (Done, its approval naming the SQL that ran,
/// the user allowed to approve on its database), with the console's identity and CSRF rules.
async fn verify(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<VerifyForm>,
) -> Response {
    let key = ObjectKey::new(namespace, name);
    let detail_path = format!("/requests/{}/{}", url_encode(&key.namespace), url_encode(&key.name));
    let who = match app.identify(&headers) {
        Ok(w) => w,
        Err(why) => {
            let body = message_body(
                "error",
                &format!("Refused: {why}. Nothing was written."),
                matches!(app.config.auth, AuthMode::Token { .. }).then_some(("/login", "Log in")),
            );
            return anonymous_page(StatusCode::UNAUTHORIZED, "Not signed in", &body);
        }
    };
    let forbidden = |why: String| {
        let body = message_body(
            "error",
            &format!("Refused: {why}. Nothing was written."),
            Some((&detail_path, "Back to the request")),
        );
        who.page(&app, StatusCode::FORBIDDEN, "Refused", PageKind::Other, None, &body)
    };
    if let Some(why) = origin_refusal(&headers) {
        return forbidden(why);
    }
    if !form.csrf.as_deref().is_some_and(|t| who.session.csrf_ok(&app.config.key, &who.user, t)) {
        return forbidden(
            "the form's security token is missing or does not belong to this session; reload the page".into(),
        );
    }
    let refuse = |status: StatusCode, text: String| {
        let (app, who, key) = (&*app, &who, &key);
        async move {
            let flash = Flash { kind: "error", text: format!("Refused: {text} Nothing was written.") };
            render_detail(app, who, key, status, Some(flash)).await
        }
    };
    let r = match app.store.get(&key).await {
        Ok(Some(r)) => r,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, format!("{key} no longer exists.")).await,
        Err(e) => return store_unavailable(&app, &who, &e),
    };
    let digest = r.status.as_ref().and_then(|s| s.generated.as_ref()).map(|g| g.sql_digest.as_str()).unwrap_or("");
    if form.uid.as_deref() != Some(r.uid())
        || form.generation.as_deref() != Some(r.generation().to_string().as_str())
        || form.digest.as_deref() != Some(digest)
    {
        return refuse(StatusCode::CONFLICT, format!("{key} changed since you loaded the page.")).await;
    }
    let policy = match app.store.get_policy().await {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return store_unavailable(&app, &who, &e),
    };
    let vq_name = form.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&key.name).to_string();
    let question = form.question.as_deref().map(str::trim).filter(|q| !q.is_empty());
    // The console has no catalog: columns are named as the SQL names them.
    let vq = match approval::verify::build(&r, &vq_name, question, &who.user, &policy, &|_| None) {
        Ok(v) => v,
        Err(e) => {
            let status = match e {
                approval::verify::Refusal::NotAllowed { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            return refuse(status, format!("{e}.")).await;
        }
    };
    match app.store.create_object(crate::spec::Object::VerifiedQuery(vq)).await {
        Ok(o) => {
            tracing::info!(name = %key, verified_query = %o.name(), by = %who.user, "console: verified query created");
            with_cookie(
                see_other(&format!("{detail_path}?verified={}", url_encode(o.name()))),
                who.new_cookie.as_deref(),
            )
        }
        Err(StoreError::AlreadyExists(k)) => {
            refuse(StatusCode::CONFLICT, format!("verifiedquery {k} already exists; choose another name.")).await
        }
        Err(e) => store_unavailable(&app, &who, &e),
    }
}

/// Server-sent events: `event: change` with `data: namespace/name` for each request written
/// (`*` when everything may have changed). Ends on shutdown.
async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(why) = app.identify(&headers) {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    let rx = app.index.changes.subscribe();
    let stream = futures::stream::unfold((rx, app.shutdown.clone()), |(mut rx, mut stop)| async move {
        let key: Arc<str> = tokio::select! {
            _ = stop.wait_for(|v| *v) => return None,
            m = rx.recv() => match m {
                Ok(k) => k,
                Err(broadcast::error::RecvError::Lagged(_)) => Arc::from(index::ALL),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        };
        Some((Ok::<_, Infallible>(Event::default().event("change").data(&*key)), (rx, stop)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
    next: Option<String>,
}

/// Only local paths: never an open redirect.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() < 2000
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// The login form, bound to an anonymous session (started here if needed) by its CSRF token.
fn login_form(app: &Inner, headers: &HeaderMap, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let key = &app.config.key;
    let (session, cookie) = match session_from(headers, key) {
        Some(s) => (s, None),
        None => {
            let s = Session::new(None);
            let c = s.set_cookie(key, is_secure(headers));
            (s, Some(c))
        }
    };
    let mut body = String::from("<h1>Log in</h1>");
    if let Some(e) = error {
        html::banner(&mut body, "error", e);
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\" class=\"login\"><label>Console token \
<input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label>\
<input type=\"hidden\" name=\"csrf\" value=\"",
    );
    html::push_escaped(&mut body, &session.csrf(key, ""));
    body.push_str("\"><input type=\"hidden\" name=\"next\" value=\"");
    html::push_escaped(&mut body, next);
    body.push_str(
        "\"><button type=\"submit\">Log in</button></form><p class=\"note\">The token is the one the console was \
started with (<code>--token</code> or <code>SQLCTL_CONSOLE_TOKEN</code>).</p>",
    );
    with_cookie(anonymous_page(status, "Log in", &body), cookie.as_deref())
}

async fn login_page(State(app): State<App>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    match &app.config.auth {
        AuthMode::Header(_) => see_other("/"),
        AuthMode::Token { .. } if app.identify(&headers).is_ok() => see_other(&next),
        AuthMode::Token { .. } => login_form(&app, &headers, StatusCode::OK, &next, None),
    }
}

async fn login(State(app): State<App>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let AuthMode::Token { token, user } = &app.config.auth else {
        return see_other("/");
    };
    if let Some(why) = origin_refusal(&headers) {
        return login_form(&app, &headers, StatusCode::FORBIDDEN, &next, Some(&format!("Refused: {why}.")));
    }
    let key = &app.config.key;
    let anon_ok =
        session_from(&headers, key).is_some_and(|s| form.csrf.as_deref().is_some_and(|t| s.csrf_ok(key, "", t)));
    if !anon_ok {
        return login_form(
            &app,
            &headers,
            StatusCode::FORBIDDEN,
            &next,
            Some("The login form expired or came from elsewhere; it was reloaded, please try again."),
        );
    }
    if !form.token.as_deref().is_some_and(|t| token_matches(t, token)) {
        tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
        tracing::warn!("console: login with a wrong token");
        return login_form(&app, &headers, StatusCode::UNAUTHORIZED, &next, Some("Wrong token."));
    }
    // A fresh session id on login: a session planted before it is worth nothing after.
    let session = Session::new(Some(user.clone()));
    tracing::info!(user = %user, "console: logged in");
    with_cookie(see_other(&next), Some(&session.set_cookie(key, is_secure(&headers))))
}

async fn logout(State(app): State<App>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let Ok(who) = app.identify(&headers) else {
        return see_other("/login");
    };
    let csrf_ok = form.csrf.as_deref().is_some_and(|t| who.session.csrf_ok(&app.config.key, &who.user, t));
    if origin_refusal(&headers).is_some() || !csrf_ok {
        let body =
            message_body("error", "Refused: the logout form came from elsewhere or expired.", Some(("/", "Back")));
        return who.page(&app, StatusCode::FORBIDDEN, "Refused", PageKind::Other, None, &body);
    }
    with_cookie(see_other("/login"), Some(&clear_cookie()))
}

async fn not_found(State(app): State<App>, headers: HeaderMap) -> Response {
    let body = message_body("error", "No such page.", Some(("/", "All requests")));
    match app.identify(&headers) {
        Ok(who) => who.page(&app, StatusCode::NOT_FOUND, "Not found", PageKind::Other, None, &body),
        Err(_) => anonymous_page(StatusCode::NOT_FOUND, "Not found", &body),
    }
}
