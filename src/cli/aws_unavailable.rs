//! `sqlctl aws …` in a build without the `aws` feature: the same commands, each refusing (exit 2)
//! with how to get a build that has them (`--features aws`, or the release binary).

use crate::config::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create the table, queues, bucket and workgroup (needs a build with the `aws` feature).
    Bootstrap(Unavailable),
    /// Show who AWS says you are (needs a build with the `aws` feature).
    Whoami(Unavailable),
}

/// Whatever was passed: the refusal is the same.
#[derive(clap::Args, Debug)]
pub struct Unavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

impl Command {
    pub async fn run(self, _g: &Context) -> anyhow::Result<()> {
        let what = match self {
            Command::Bootstrap(_) => "`sqlctl aws bootstrap`",
            Command::Whoami(_) => "`sqlctl aws whoami`",
        };
        Err(crate::aws::unavailable(what))
    }
}
