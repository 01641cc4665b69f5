//! `sqlctl config_cmd` (being written).

use crate::config::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Not available yet.
    Placeholder,
}

impl Command {
    pub async fn run(self, _g: &GlobalOpts) -> anyhow::Result<()> {
        Err(super::Exit::refused("not available yet"))
    }
}
