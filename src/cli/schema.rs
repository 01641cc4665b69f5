//! `sqlctl schema [KIND]`: the JSON Schema of a kind (the same text as schemas/); QueryRequest
//! when no kind is named.

use super::Exit;
use crate::config::Context;
use crate::spec::ObjectKind;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// queryrequest (default), semanticmodel (sm) or verifiedquery (vq).
    #[arg(value_name = "KIND")]
    pub kind: Option<String>,
}

impl Args {
    pub async fn run(self, _g: &Context) -> anyhow::Result<()> {
        let kind = match self.kind.as_deref() {
            None => ObjectKind::QueryRequest,
            Some(k) => ObjectKind::parse_resource(k).ok_or_else(|| {
                Exit::usage(format!("unknown kind {k:?}: use queryrequest, semanticmodel (sm) or verifiedquery (vq)"))
            })?,
        };
        print!("{}", crate::spec::json_schema_of(kind));
        Ok(())
    }
}
