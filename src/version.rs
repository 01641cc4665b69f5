//! What this binary is: version, commit, cargo profile, target and cargo features.
//!
//! Shown by `sqlctl version` (the client's, and the running controller's as it recorded it in
//! the lease), exported as `sqlctl_build_info` on `/metrics`, and written by a controller into
//! the lease record it holds, so `sqlctl version` against any store names the build that is
//! reconciling it. The commit and profile come from `build.rs`.

use serde::{Deserialize, Serialize};

/// A build of sqlctl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// The crate version (`Cargo.toml`).
    pub version: String,
    /// The commit it was built from (12 hex digits), or `unknown`.
    pub commit: String,
    /// The cargo profile: `debug`, `release`, `quick`…
    pub profile: String,
    /// The target triple.
    pub target: String,
    /// The optional cargo features compiled in (empty: the default build).
    pub features: Vec<String>,
}

/// Optional cargo features this binary can be built with, and whether each is on.
fn features() -> Vec<String> {
    let all: &[(&str, bool)] =
        &[("aws", cfg!(feature = "aws")), ("otlp", cfg!(feature = "otlp")), ("png", cfg!(feature = "png"))];
    all.iter().filter(|(_, on)| *on).map(|(n, _)| n.to_string()).collect()
}

impl Build {
    /// This binary's build.
    pub fn this() -> Build {
        Build {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("SQLCTL_BUILD_COMMIT").to_string(),
            profile: env!("SQLCTL_BUILD_PROFILE").to_string(),
            target: env!("SQLCTL_BUILD_TARGET").to_string(),
            features: features(),
        }
    }

    /// The features as one label value: `otlp,…`, or `default`.
    pub fn features_label(&self) -> String {
        if self.features.is_empty() { "default".to_string() } else { self.features.join(",") }
    }

    /// The compact form stored in the lease record: JSON, so fields can be added later.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`Build::encode`]'s form; None for an empty or foreign value (a lease written by a
    /// controller that predates build records).
    pub fn decode(s: &str) -> Option<Build> {
        serde_json::from_str(s).ok()
    }
}

/// This binary's build in the lease form, computed once.
pub fn encoded() -> &'static str {
    static ENCODED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ENCODED.get_or_init(|| Build::this().encode())
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sqlctl {} (commit {}, profile {}, {}, features: {})",
            self.version,
            self.commit,
            self.profile,
            self.target,
            self.features_label()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_names_its_version_profile_and_round_trips_through_the_lease_form() {
        let b = Build::this();
        assert_eq!(b.version, env!("CARGO_PKG_VERSION"));
        assert!(!b.commit.is_empty() && !b.profile.is_empty() && !b.target.is_empty(), "{b:?}");
        // Unit tests build in the test profile's directory.
        assert_eq!(b.profile, "debug", "{b:?}");
        assert_eq!(Build::decode(&b.encode()), Some(b.clone()));
        assert_eq!(Build::decode(""), None);
        assert_eq!(Build::decode("not json"), None);
        let shown = b.to_string();
        assert!(shown.starts_with(&format!("sqlctl {} (commit ", b.version)), "{shown}");
        // Exactly the optional features compiled in (scripts/test runs this with and without `aws`).
        let on: Vec<&str> =
            [("aws", cfg!(feature = "aws")), ("otlp", cfg!(feature = "otlp")), ("png", cfg!(feature = "png"))]
                .into_iter()
                .filter_map(|(n, on)| on.then_some(n))
                .collect();
        let label = if on.is_empty() { "default".to_string() } else { on.join(",") };
        assert!(shown.contains(&format!("features: {label})")), "{shown}");
    }
}
