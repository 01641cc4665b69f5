//! `sqlctl version`: this client's build and the build of the controller reconciling the store,
//! as kubectl prints client and server versions.
//!
//! The controller's build is what the leader recorded in the lease it holds (every controller
//! writes its build into the lease when it takes it), so it is read from the same store the
//! other commands use — DynamoDB or the SQLite file — with no network path to the controller.
//! `--client` prints the client alone and touches no store.
//!
//!   $ sqlctl version
//!   Client Version: sqlctl 0.1.0 (commit 1a2b3c4d5e6f, profile quick, x86_64-unknown-linux-gnu, features: default)
//!   Controller Version: sqlctl 0.1.0 (commit 1a2b3c4d5e6f, profile release, …) — leader ip-10-0-3-7-1-a1b2c3, epoch 4, renewed 2s ago

use serde::Serialize;

use super::Exit;
use crate::config::Context;
use crate::store::{CONTROLLER_LEASE, Lease};
use crate::version::Build;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionFormat {
    Yaml,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the client's version only (no store is read).
    #[arg(long)]
    pub client: bool,
    /// Output format (default: one line each).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<VersionFormat>,
}

/// The controller holding (or last holding) the lease, as the lease records it.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControllerVersion {
    /// None: the lease was written by a controller that predates build records.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// The leader's identity; empty when the lease was released (no controller running).
    pub identity: String,
    pub epoch: u64,
    /// Last renewal, RFC 3339.
    pub renewed_at: String,
    /// True when the lease is held and was renewed within its duration.
    pub live: bool,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Versions {
    client_version: Build,
    #[serde(skip_serializing_if = "Option::is_none")]
    controller_version: Option<ControllerVersion>,
}

impl ControllerVersion {
    pub fn from_lease(l: &Lease, now_ms: i64) -> ControllerVersion {
        let renewed = chrono::DateTime::from_timestamp_millis(l.renewed_at_ms).unwrap_or_default();
        ControllerVersion {
            build: Build::decode(&l.build),
            identity: l.holder.clone(),
            epoch: l.epoch,
            renewed_at: renewed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            live: !l.holder.is_empty() && now_ms.saturating_sub(l.renewed_at_ms) <= l.duration_ms as i64,
        }
    }

    /// The one-line form.
    pub fn line(&self) -> String {
        let build = self.build.as_ref().map(ToString::to_string).unwrap_or_else(|| "unknown build".into());
        let ago = chrono::DateTime::parse_from_rfc3339(&self.renewed_at)
            .map(|t| super::output::age(Some(t.with_timezone(&chrono::Utc))))
            .unwrap_or_default();
        match (self.identity.is_empty(), self.live) {
            (true, _) => format!("{build} — no controller holds the lease (released {ago} ago, epoch {})", self.epoch),
            (false, true) => format!("{build} — leader {}, epoch {}, renewed {ago} ago", self.identity, self.epoch),
            (false, false) => format!(
                "{build} — lease held by {} but not renewed for {ago} (epoch {}): the controller may be down",
                self.identity, self.epoch
            ),
        }
    }
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let client = Build::this();
        let controller = if self.client {
            None
        } else {
            let store = g.store().await?;
            let lease = store.get_lease(CONTROLLER_LEASE).await.map_err(|e| {
                Exit::refused(format!(
                    "Client Version: {client}\nthe store cannot be read for the controller's version: {e}\n\
                     (use --client for the client's version alone)"
                ))
            })?;
            Some(lease)
        };
        let now = chrono::Utc::now().timestamp_millis();
        let controller_version =
            controller.as_ref().and_then(|l| l.as_ref()).map(|l| ControllerVersion::from_lease(l, now));
        match self.output {
            Some(format) => {
                let v = Versions { client_version: client, controller_version };
                let text = match format {
                    VersionFormat::Json => super::output::to_json(&v),
                    VersionFormat::Yaml => super::output::to_yaml(&v),
                };
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
            }
            None => {
                println!("Client Version: {client}");
                match (&controller, &controller_version) {
                    (None, _) => {}
                    (Some(_), Some(c)) => println!("Controller Version: {}", c.line()),
                    (Some(_), None) => {
                        println!("Controller Version: none — no controller has held the lease in this store yet")
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_at_ms: i64, build: &str) -> Lease {
        Lease { holder: holder.into(), epoch: 3, renewals: 9, duration_ms: 15_000, renewed_at_ms, build: build.into() }
    }

    #[test]
    fn the_controller_line_says_who_leads_and_whether_it_is_alive() {
        let now = chrono::Utc::now().timestamp_millis();
        let b = Build::this();
        let live = ControllerVersion::from_lease(&lease("host-1-abc", now - 1_000, &b.encode()), now);
        assert!(live.live);
        assert_eq!(live.build.as_ref(), Some(&b));
        let line = live.line();
        assert!(line.starts_with(&b.to_string()) && line.contains("leader host-1-abc, epoch 3"), "{line}");

        let stale = ControllerVersion::from_lease(&lease("host-1-abc", now - 60_000, &b.encode()), now);
        assert!(!stale.live);
        assert!(stale.line().contains("may be down"), "{}", stale.line());

        let released = ControllerVersion::from_lease(&lease("", now - 5_000, ""), now);
        assert_eq!(released.build, None);
        let line = released.line();
        assert!(line.starts_with("unknown build") && line.contains("no controller holds the lease"), "{line}");
    }
}
