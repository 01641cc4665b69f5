//! `sqlDigest`: what an approval binds to.
//!
//! A sha256 over a canonical, versioned, length-prefixed encoding of everything that decides what
//! runs: the engine, the database, the exact SQL bytes and the effective limits. Length prefixes
//! make the encoding unambiguous (no field can bleed into the next), and the version line lets a
//! future encoding coexist with approvals made under this one.

use sha2::{Digest, Sha256};

use super::types::EngineKind;

/// Version tag hashed first; bump it if the encoding ever changes.
pub const DIGEST_VERSION: &str = "sqlctl.dev/sql-digest/v1";

/// Limits after defaults are applied; these are what the engine enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub max_rows: u64,
    pub max_bytes_scanned: Option<u64>,
    pub timeout_ms: u64,
}

/// The digest of one runnable query, as lower-case hex.
pub fn sql_digest(engine: EngineKind, database: &str, sql: &str, limits: &EffectiveLimits) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
        h.update(b"\n");
    };
    field("version", DIGEST_VERSION.as_bytes());
    field("engine", engine.as_str().as_bytes());
    field("database", database.as_bytes());
    field("sql", sql.as_bytes());
    field("maxRows", limits.max_rows.to_string().as_bytes());
    field("maxBytesScanned", limits.max_bytes_scanned.map(|b| b.to_string()).unwrap_or_default().as_bytes());
    field("timeoutMs", limits.timeout_ms.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// A short stable hash of several parts (idempotency tokens, decision ids).
pub fn token(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Does `given` name `digest`? Accepts the full digest or a prefix of at least 12 hex characters.
pub fn digest_matches(digest: &str, given: &str) -> bool {
    let g = given.trim().to_ascii_lowercase();
    g.len() >= 12 && g.len() <= digest.len() && g.chars().all(|c| c.is_ascii_hexdigit()) && digest.starts_with(&g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> EffectiveLimits {
        EffectiveLimits { max_rows: 1000, max_bytes_scanned: None, timeout_ms: 600_000 }
    }

    #[test]
    fn digest_changes_with_every_field() {
        let base = sql_digest(EngineKind::Local, "tpch", "select 1", &limits());
        assert_eq!(base.len(), 64);
        assert_eq!(base, sql_digest(EngineKind::Local, "tpch", "select 1", &limits()));
        assert_ne!(base, sql_digest(EngineKind::Athena, "tpch", "select 1", &limits()));
        assert_ne!(base, sql_digest(EngineKind::Local, "tpch2", "select 1", &limits()));
        assert_ne!(base, sql_digest(EngineKind::Local, "tpch", "select 1 ", &limits()));
        let mut l = limits();
        l.max_rows = 10;
        assert_ne!(base, sql_digest(EngineKind::Local, "tpch", "select 1", &l));
    }

    #[test]
    fn prefixes_need_twelve_hex_chars() {
        let d = sql_digest(EngineKind::Local, "tpch", "select 1", &limits());
        assert!(digest_matches(&d, &d));
        assert!(digest_matches(&d, &d[..12]));
        assert!(digest_matches(&d, &d[..12].to_uppercase()));
        assert!(!digest_matches(&d, &d[..11]));
        assert!(!digest_matches(&d, "000000000000"));
    }
}
