//! `sqlctl schema`: the JSON Schema of QueryRequest (the same text as schemas/).

use crate::config::Context;

#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    pub async fn run(self, _g: &Context) -> anyhow::Result<()> {
        print!("{}", crate::spec::json_schema());
        Ok(())
    }
}
