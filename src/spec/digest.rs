//! `sqlDigest`: what an approval binds to.
//!
//! A sha256 over a canonical, versioned, length-prefixed encoding of everything that decides what
//! runs: the engine, the database, the exact SQL bytes and the effective limits. Length prefixes
//! make the encoding unambiguous (no field can bleed into the next), and the version line lets a
//! future encoding coexist with approvals made under this one.

use sha2::{Digest, Sha256};

use super::types::EngineKind;

/// Version tag hashed first; bump it if the encoding ever changes (v2: `maxResultBytes`).
pub const DIGEST_VERSION: &str = "sqlctl.dev/sql-digest/v2";

/// Limits after defaults are applied; these are what the engine enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveLimits {
    /// Rows the result (and the preview) stops at.
    pub max_rows: u64,
    pub max_bytes_scanned: Option<u64>,
    pub timeout_ms: u64,
    /// Largest result file; a run whose result grows past it fails.
    pub max_result_bytes: u64,
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
    field("maxResultBytes", limits.max_result_bytes.to_string().as_bytes());
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

/// Length of a digest in hex: approvals name all of it.
pub const DIGEST_HEX_LEN: usize = 64;

/// Characters of a digest shown for reading (`get -o wide`, chat text): never accepted as proof.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// Why a value given as a digest was not the full digest of what is awaiting approval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestMismatch {
    /// Not 64 hex characters: a prefix or a typo. Prefixes are for reading only: the requester
    /// writes the SQL, so a 12-hex (48-bit) prefix can be collided with ~2^24 hashes.
    #[error(
        "`{given}` is not a full sqlDigest: pass all 64 hex characters (a prefix is for reading only and is never accepted as an approval)"
    )]
    NotFull { given: String },
    /// A full digest of something else.
    #[error("digest {given} does not match")]
    Different { given: String },
}

/// Does `given` name `digest`? Only the full 64-hex digest does (case-insensitive, surrounding
/// whitespace ignored).
pub fn digest_matches(digest: &str, given: &str) -> Result<(), DigestMismatch> {
    let g = given.trim().to_ascii_lowercase();
    if g.len() != DIGEST_HEX_LEN || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestMismatch::NotFull {
            given: super::text::escape_hidden(given.trim()).chars().take(80).collect(),
        });
    }
    if g != digest {
        return Err(DigestMismatch::Different { given: g });
    }
    Ok(())
}

/// The prefix of `digest` shown for reading.
pub fn display_prefix(digest: &str) -> &str {
    digest.get(..DISPLAY_PREFIX_LEN).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> EffectiveLimits {
        EffectiveLimits { max_rows: 1000, max_bytes_scanned: None, timeout_ms: 600_000, max_result_bytes: 1 << 30 }
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
        // maxResultBytes decides what runs (where the result stops), so it is digested too.
        let mut l = limits();
        l.max_result_bytes = 1 << 20;
        assert_ne!(base, sql_digest(EngineKind::Local, "tpch", "select 1", &l));
    }

    #[test]
    fn only_the_full_digest_is_accepted() {
        let d = sql_digest(EngineKind::Local, "tpch", "select 1", &limits());
        assert_eq!(digest_matches(&d, &d), Ok(()));
        assert_eq!(digest_matches(&d, &format!("  {}  ", d.to_uppercase())), Ok(()));
        for short in [&d[..12], &d[..63], &d[..32], ""] {
            assert!(matches!(digest_matches(&d, short), Err(DigestMismatch::NotFull { .. })), "{short}");
        }
        let other = sql_digest(EngineKind::Local, "tpch", "select 2", &limits());
        assert!(matches!(digest_matches(&d, &other), Err(DigestMismatch::Different { .. })));
        assert!(matches!(digest_matches(&d, &format!("{}g", &d[..63])), Err(DigestMismatch::NotFull { .. })));
        assert_eq!(display_prefix(&d).len(), 12);
    }
}
