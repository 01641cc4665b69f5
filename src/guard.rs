//! The guard (stub, being written).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct GuardError {
    pub reason: String,
}
pub fn check(_sql: &str, _database: &str, _known_tables: &[String], _allowed: &[String]) -> Result<Vec<String>, GuardError> {
    Err(GuardError { reason: "guard not implemented".into() })
}
