//! How a command ends: the exit code and the one message that says what to do next.
//!
//! Lives below `cli` so that configuration and backends can refuse with a code without
//! importing the command layer.

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    /// Exit 2: the command line itself is wrong.
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Exit { code: 2, message: message.into() }.into()
    }
    /// Exit 1: refused or failed, with a message saying what to do next.
    pub fn refused(message: impl Into<String>) -> anyhow::Error {
        Exit { code: 1, message: message.into() }.into()
    }
    /// Exit 1 with nothing more to print (the command already said why).
    pub fn silent() -> anyhow::Error {
        Exit { code: 1, message: String::new() }.into()
    }
}
