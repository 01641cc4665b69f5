//! `sqlctl init`: writes the TPC-H sample warehouse the local engine reads.

use std::time::Instant;

use crate::config::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TPC-H scale factor (0.1 ≈ 100 MB in memory, 25 MB of Parquet; 1 ≈ 10× that).
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Database (directory) name to write.
    #[arg(long, default_value = "tpch")]
    pub database: String,
    /// Overwrite an existing database directory.
    #[arg(long)]
    pub force: bool,
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        if !(self.scale > 0.0 && self.scale <= 100.0) {
            return Err(super::Exit::usage(format!("--scale must be > 0 and ≤ 100 (got {})", self.scale)));
        }
        let ok = self.database.len() <= 128
            && self.database.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && self.database.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(super::Exit::usage(format!(
                "--database {:?}: use lower-case letters, digits and _ (e.g. tpch)",
                self.database
            )));
        }
        let dir = g.data_dir().join(&self.database);
        if dir.exists() && !self.force {
            return Err(super::Exit::refused(format!(
                "{} already exists; pass --force to overwrite it",
                dir.display()
            )));
        }
        write_warehouse(g, &self.database, self.scale).await
    }
}

/// Writes the warehouse with progress on stderr.
pub async fn write_warehouse(g: &Context, database: &str, scale: f64) -> anyhow::Result<()> {
    let data_dir = g.data_dir();
    let db = database.to_string();
    eprintln!("writing TPC-H (scale {scale}) to {}", data_dir.join(&db).display());
    let started = Instant::now();
    let tty = super::output::stderr_is_tty();
    let tables = tokio::task::spawn_blocking(move || {
        // Progress arrives per batch; on a terminal it rewrites one line, in a log it prints
        // each table once when it is complete.
        let mut last: Option<(String, u64)> = None;
        let result = crate::warehouse::init_tpch(&data_dir, &db, scale, &mut |table, rows| {
            if tty {
                eprint!("\r  {table:<9} {rows:>10} rows");
            }
            if let Some((t, n)) = &last
                && t != table
            {
                if tty {
                    eprintln!("\r  {t:<9} {n:>10} rows");
                } else {
                    eprintln!("  {t:<9} {n:>10} rows");
                }
            }
            last = Some((table.to_string(), rows));
        });
        if let Some((t, n)) = last {
            eprintln!("{}  {t:<9} {n:>10} rows", if tty { "\r" } else { "" });
        }
        result
    })
    .await??;
    let total: u64 = tables.iter().map(|(_, n)| n).sum();
    eprintln!("wrote {} tables, {total} rows in {:.1}s", tables.len(), started.elapsed().as_secs_f64());
    Ok(())
}
