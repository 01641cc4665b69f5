//! A failure-injecting engine for tests, the engine's twin of [`crate::store::failure`]: wraps
//! a real [`Engine`] and makes the n-th call of a chosen operation fail with a chosen error.

use async_trait::async_trait;

use super::{Engine, EngineError, ExecState, QueryJob, Waker};
use crate::failure::Failing;
use crate::spec::Estimate;

/// An [`Engine`] whose operations (`"start"`, `"poll"`, `"cancel"`, `"plan"`, `"estimate"`)
/// fail on cue; every other call goes to the wrapped engine.
pub type FailureEngine<E> = Failing<E, EngineError>;

#[async_trait]
impl<E: Engine> Engine for Failing<E, EngineError> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn start(&self, job: &QueryJob, waker: Waker) -> Result<String, EngineError> {
        self.failures.check("start")?;
        self.inner.start(job, waker).await
    }
    async fn poll(&self, id: &str) -> Result<ExecState, EngineError> {
        self.failures.check("poll")?;
        self.inner.poll(id).await
    }
    async fn cancel(&self, id: &str) -> Result<(), EngineError> {
        self.failures.check("cancel")?;
        self.inner.cancel(id).await
    }
    async fn plan(&self, database: &str, sql: &str) -> Result<(), EngineError> {
        self.failures.check("plan")?;
        self.inner.plan(database, sql).await
    }
    async fn estimate(&self, database: &str, sql: &str) -> Result<Estimate, EngineError> {
        self.failures.check("estimate")?;
        self.inner.estimate(database, sql).await
    }
}
