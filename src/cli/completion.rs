//! `sqlctl completion SHELL`: a shell completion script for bash, zsh, fish, elvish or
//! PowerShell, generated from the same command definitions `--help` shows (clap_complete).
//!
//!   source <(sqlctl completion bash)                 # this shell
//!   sqlctl completion zsh > "${fpath[1]}/_sqlctl"    # every new zsh
//!   sqlctl completion fish > ~/.config/fish/completions/sqlctl.fish

use clap::CommandFactory;

use crate::config::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl Args {
    pub async fn run(self, _g: &Context) -> anyhow::Result<()> {
        let mut cmd = super::Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut cmd, "sqlctl", &mut out);
        std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
        Ok(())
    }
}
