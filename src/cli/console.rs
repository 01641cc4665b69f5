//! `sqlctl console`: the approval web console (see [`crate::console`]); also served beside the
//! controller with `sqlctl controller --console-addr`.
//!
//! Identity comes from exactly one of:
//! * `--auth-header NAME`: trust a header set by an authenticating proxy (an ALB with OIDC sets
//!   `x-amzn-oidc-identity`; oauth2-proxy sets `X-Forwarded-Email`). Only behind a proxy that
//!   strips the header from client requests and is the only way to reach the console.
//! * `--token` (better: `SQLCTL_CONSOLE_TOKEN`, which `ps` does not show): a shared secret of at
//!   least 16 characters; whoever logs in with it decides as `--as` (default: the OS user, as on
//!   the CLI). The token is posted by a login form, never put in a URL.
//!
//! With neither the console does not start: an anonymous console would let anyone who can reach
//! the port approve queries.

use std::net::SocketAddr;

use axum::http::HeaderName;
use tokio::sync::watch;

use super::Exit;
use crate::config::Context;
use crate::console::{self, AuthMode, ConsoleConfig, ServerKey, auth::MIN_TOKEN_CHARS};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to serve on (port 0 picks a free port; the URL is printed on start).
    #[arg(long, env = "SQLCTL_CONSOLE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Trust this request header as the user's name (set by an authenticating proxy that strips
    /// it from client requests, e.g. x-amzn-oidc-identity behind an ALB with OIDC).
    #[arg(long, value_name = "NAME")]
    pub auth_header: Option<String>,
    /// Shared secret for the login form (≥ 16 characters); prefer the environment variable.
    #[arg(long, env = "SQLCTL_CONSOLE_TOKEN", hide_env_values = true, value_name = "SECRET")]
    pub token: Option<String>,
    /// With --token: decide as this approver (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    /// Secret that signs sessions and form tokens, the same on every replica behind one load
    /// balancer (default: derived from --token; random per process with --auth-header).
    #[arg(long, env = "SQLCTL_CONSOLE_SESSION_KEY", hide_env_values = true, value_name = "SECRET")]
    pub session_key: Option<String>,
}

/// The console flags of `sqlctl controller` (the same meaning, prefixed `--console-`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ControllerConsoleArgs {
    /// Also serve the approval console here (e.g. 127.0.0.1:8080); see `sqlctl console --help`.
    #[arg(long, env = "SQLCTL_CONSOLE_ADDR", value_name = "ADDR")]
    pub console_addr: Option<SocketAddr>,
    /// Console: trust this header as the user's name (behind an authenticating proxy only).
    #[arg(long, value_name = "NAME")]
    pub console_auth_header: Option<String>,
    /// Console: shared secret for the login form (≥ 16 characters).
    #[arg(long, env = "SQLCTL_CONSOLE_TOKEN", hide_env_values = true, value_name = "SECRET")]
    pub console_token: Option<String>,
    /// Console: with --console-token, decide as this approver (default: the OS user).
    #[arg(long, value_name = "NAME")]
    pub console_user: Option<String>,
    /// Console: secret that signs sessions (the same on every replica).
    #[arg(long, env = "SQLCTL_CONSOLE_SESSION_KEY", hide_env_values = true, value_name = "SECRET")]
    pub console_session_key: Option<String>,
}

impl ControllerConsoleArgs {
    /// Starts the console beside the controller when `--console-addr` is set.
    pub async fn start(&self, g: &Context, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Some(addr) = self.console_addr else { return Ok(()) };
        let config = resolve(
            g,
            self.console_auth_header.as_deref(),
            self.console_token.as_deref(),
            self.console_user.as_deref(),
            self.console_session_key.as_deref(),
            "--console-",
        )?;
        let (local, _handle) = start(g, addr, config, shutdown).await?;
        tracing::info!(url = %format!("http://{local}/"), "serving the approval console");
        Ok(())
    }
}

/// Turns the flags into a console configuration, refusing unsafe or ambiguous combinations.
fn resolve(
    g: &Context,
    auth_header: Option<&str>,
    token: Option<&str>,
    user: Option<&str>,
    session_key: Option<&str>,
    prefix: &str,
) -> anyhow::Result<ConsoleConfig> {
    let token = token.filter(|t| !t.is_empty());
    let auth_header = auth_header.map(str::trim).filter(|h| !h.is_empty());
    let auth = match (auth_header, token) {
        (Some(_), Some(_)) => {
            return Err(Exit::usage(format!(
                "{prefix}auth-header and {prefix}token are alternatives: use the header behind an authenticating proxy, the token otherwise"
            )));
        }
        (None, None) => {
            return Err(Exit::usage(format!(
                "the console needs to know who decides: {prefix}token (or SQLCTL_CONSOLE_TOKEN) for a login with a shared \
secret of ≥ {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 16`), or {prefix}auth-header NAME behind an \
authenticating proxy that sets that header (e.g. x-amzn-oidc-identity on an ALB with OIDC)"
            )));
        }
        (Some(h), None) => {
            if user.is_some() {
                return Err(Exit::usage(format!(
                    "the user comes from the header with {prefix}auth-header; drop the user flag"
                )));
            }
            let name = HeaderName::try_from(h)
                .map_err(|_| Exit::usage(format!("{prefix}auth-header {h:?} is not a valid HTTP header name")))?;
            tracing::info!(header = %name, "console: trusting the {name} header as the user's identity; only an authenticating proxy that strips it from clients may reach this console");
            AuthMode::Header(name)
        }
        (None, Some(t)) => {
            if t.chars().count() < MIN_TOKEN_CHARS {
                return Err(Exit::usage(format!(
                    "the console token must have at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 16`)"
                )));
            }
            AuthMode::Token { token: t.to_string(), user: crate::identity::local_user(user) }
        }
    };
    let key = match (session_key.filter(|k| !k.is_empty()), &auth) {
        (Some(k), _) if k.chars().count() < MIN_TOKEN_CHARS => {
            return Err(Exit::usage(format!("the session key must have at least {MIN_TOKEN_CHARS} characters")));
        }
        (Some(k), _) => ServerKey::derive(k),
        (None, AuthMode::Token { token, .. }) => ServerKey::derive(token),
        (None, AuthMode::Header(_)) => ServerKey::random(),
    };
    let (poll, relist) = if g.is_aws() {
        (console::AWS_POLL, console::AWS_RELIST)
    } else {
        (console::DEFAULT_POLL, console::DEFAULT_RELIST)
    };
    Ok(ConsoleConfig { auth, key, poll, relist })
}

async fn start(
    g: &Context,
    addr: SocketAddr,
    config: ConsoleConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let parts = console::Parts { store: g.store().await?, results: g.results().await?, config };
    console::serve(addr, parts, shutdown).await.map_err(|e| Exit::refused(e.to_string()))
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let config = resolve(
            g,
            self.auth_header.as_deref(),
            self.token.as_deref(),
            self.as_.as_deref(),
            self.session_key.as_deref(),
            "--",
        )?;
        let who = match &config.auth {
            AuthMode::Token { user, .. } => format!("log in with the console token; decisions are made as {user}"),
            AuthMode::Header(h) => format!("users come from the {h} header"),
        };
        let (tx, rx) = watch::channel(false);
        tokio::spawn(super::shutdown_on_signal(tx));
        let (local, handle) = start(g, self.addr, config, rx).await?;
        // On stdout, for people and for scripts that start the console on port 0.
        println!("sqlctl console listening on http://{local}/ ({who})");
        handle.await?;
        tracing::info!("console stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn global() -> Context {
        crate::cli::Cli::try_parse_from(["sqlctl", "config", "view"]).unwrap().global.resolve()
    }

    #[test]
    fn exactly_one_identity_source_is_required() {
        let g = global();
        let e = resolve(&g, None, None, None, None, "--").unwrap_err().to_string();
        assert!(e.contains("--token") && e.contains("--auth-header"), "{e}");
        let e = resolve(&g, Some("x-user"), Some("0123456789abcdef"), None, None, "--").unwrap_err().to_string();
        assert!(e.contains("alternatives"), "{e}");
        let e = resolve(&g, None, Some("short"), None, None, "--").unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
        let e = resolve(&g, Some("bad header"), None, None, None, "--console-").unwrap_err().to_string();
        assert!(e.contains("--console-auth-header"), "{e}");
        let c = resolve(&g, None, Some("0123456789abcdef"), Some("alice"), None, "--").unwrap();
        assert!(matches!(c.auth, AuthMode::Token { ref user, .. } if user == "alice"));
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "the token never shows in debug output");
        let c = resolve(&g, Some("X-Amzn-Oidc-Identity"), None, None, None, "--").unwrap();
        assert!(matches!(c.auth, AuthMode::Header(ref h) if h == "x-amzn-oidc-identity"));
    }
}
