//! `sqlctl delete NAME`: a request that may be running is cancelled first (finalizer).

use super::{Exit, get_request};
use crate::config::GlobalOpts;
use crate::spec::ObjectKey;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub names: Vec<String>,
    /// Remove at once, without waiting for the controller to cancel a running query.
    #[arg(long)]
    pub force: bool,
}

impl Args {
    pub async fn run(self, g: &GlobalOpts) -> anyhow::Result<()> {
        if self.names.is_empty() {
            return Err(Exit::usage("name at least one request to delete"));
        }
        let store = g.store().await?;
        let mut failed = false;
        for name in &self.names {
            if let Err(e) = get_request(store.as_ref(), g, name).await {
                eprintln!("sqlctl: {e}");
                failed = true;
                continue;
            }
            match store.delete(&ObjectKey::new(&g.namespace, name), self.force).await {
                Ok(None) => println!("queryrequest/{name} deleted"),
                Ok(Some(_)) => println!(
                    "queryrequest/{name} marked for deletion (the controller cancels its query, then removes it)"
                ),
                Err(e) => {
                    eprintln!("sqlctl: {name}: {e}");
                    failed = true;
                }
            }
        }
        if failed { Err(Exit::silent()) } else { Ok(()) }
    }
}
