//! The read-only session every statement of the local engine is planned in, and how its errors
//! read: the small pieces the other rooms of [`super`] share.

use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;

use crate::engine::EngineError;
use crate::warehouse::WarehouseError;

/// The read-only options every statement of this engine is planned with.
pub(super) fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// Why an execution failed (becomes `ExecState::Failed`).
pub(super) struct RunError(pub(super) String);

impl From<DataFusionError> for RunError {
    fn from(e: DataFusionError) -> Self {
        RunError(datafusion_message(&e))
    }
}

/// DataFusion's message without the backtrace noise some variants carry.
pub(super) fn datafusion_message(e: &DataFusionError) -> String {
    e.to_string().trim().to_string()
}

pub(super) fn warehouse_error(e: WarehouseError) -> EngineError {
    EngineError::Permanent(e.to_string())
}
