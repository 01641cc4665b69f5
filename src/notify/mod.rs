//! The `Notifier`: tells humans what needs them (approval requests) and what happened (results,
//! failures). Google Chat and SQS in production; the log on a laptop.

use async_trait::async_trait;

use crate::spec::QueryRequest;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// The request entered AwaitingApproval for its current round.
    async fn approval_requested(&self, req: &QueryRequest) -> Result<(), NotifyError>;
    /// The request reached a terminal phase.
    async fn finished(&self, req: &QueryRequest) -> Result<(), NotifyError>;
}

/// Writes notifications to the log (the embedded default).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn approval_requested(&self, req: &QueryRequest) -> Result<(), NotifyError> {
        let st = req.status.as_ref();
        let g = st.and_then(|s| s.generated.as_ref());
        tracing::info!(
            name = %req.metadata.name,
            namespace = req.metadata.namespace(),
            uid = req.uid(),
            generation = req.generation(),
            sql_digest = g.map(|g| g.sql_digest.as_str()).unwrap_or(""),
            "approval requested: run `sqlctl approve {}` (or refine / reject)",
            req.metadata.name
        );
        Ok(())
    }

    async fn finished(&self, req: &QueryRequest) -> Result<(), NotifyError> {
        tracing::info!(
            name = %req.metadata.name,
            namespace = req.metadata.namespace(),
            uid = req.uid(),
            generation = req.generation(),
            phase = %req.phase(),
            "request finished"
        );
        Ok(())
    }
}
