//! `sqlctl generate` (being written).

use crate::config::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    pub async fn run(self, _g: &GlobalOpts) -> anyhow::Result<()> {
        Err(super::Exit::refused("not available yet"))
    }
}
