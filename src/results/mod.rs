//! Where finished results and their artifacts live: the `ResultStore` seam.
//!
//! A result is addressed by a typed [`ResultKey`] (namespace, name, uid, generation, attempt)
//! and an [`Artifact`] (the CSV, or the chart drawn from it); its *location* — a path or an
//! `s3://` URI — is what the status records and what every later reader passes back. One
//! implementation per backend:
//!
//! - [`local::LocalResults`]: a directory (`<home>/results`), files written through a temp file
//!   renamed into place;
//! - [`s3::S3Results`]: S3, either as the local engine's upload target (`--results s3://…`,
//!   keeping the local copy as its spool) or where Athena writes (which may be a workgroup's
//!   enforced location, so it reads any location Athena reported).
//!
//! Engines only execute: the local engine writes its CSV into a [`PendingResult`] this seam
//! hands out and commits; Athena writes its own result and asks this seam only for its size and
//! rows. The chart, the console and `sqlctl results` read and store through it without building
//! an engine.

pub mod local;
#[cfg(feature = "aws")]
pub mod s3;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::spec::QueryRequest;

/// Which result: one attempt of one generation of one request. The uid keeps a deleted and
/// recreated request of the same name from sharing (and overwriting) its predecessor's files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResultKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: u64,
    pub attempt: u32,
}

impl ResultKey {
    /// The key of `attempt` of `req`'s current generation.
    pub fn of(req: &QueryRequest, attempt: u32) -> ResultKey {
        ResultKey {
            namespace: req.metadata.namespace().to_string(),
            name: req.metadata.name.clone(),
            uid: req.uid().to_string(),
            generation: req.generation(),
            attempt,
        }
    }

    /// `<namespace>/<name>/<uid>/<generation>-<attempt>`, relative to a results root; refused
    /// when a part could leave the root or name a directory (`..`, `/`, `\`, empty).
    pub fn prefix(&self) -> Result<String, ResultError> {
        for part in [&self.namespace, &self.name, &self.uid] {
            let ok = !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\', '\0']);
            if !ok {
                return Err(ResultError::permanent(format!(
                    "invalid result key part {part:?}: namespace, name and uid must each be one path segment"
                )));
            }
        }
        Ok(format!("{}/{}/{}/{}-{}", self.namespace, self.name, self.uid, self.generation, self.attempt))
    }

    /// The prefix plus the artifact's extension (`…/1-1.csv`).
    pub fn path(&self, artifact: Artifact) -> Result<String, ResultError> {
        Ok(format!("{}.{}", self.prefix()?, artifact.extension()))
    }
}

impl std::fmt::Display for ResultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}-{}", self.namespace, self.name, self.uid, self.generation, self.attempt)
    }
}

/// What is stored for a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// The full result, CSV with a header row.
    Csv,
    /// The chart drawn from it (SVG), stored next to the CSV.
    Chart,
    /// The same chart as PNG (builds with the `png` feature), for places that show no SVG.
    ChartPng,
}

impl Artifact {
    pub const ALL: [Artifact; 3] = [Artifact::Csv, Artifact::Chart, Artifact::ChartPng];

    pub fn extension(self) -> &'static str {
        match self {
            Artifact::Csv => "csv",
            Artifact::Chart => "svg",
            Artifact::ChartPng => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Artifact::Csv => "text/csv",
            Artifact::Chart => "image/svg+xml",
            Artifact::ChartPng => "image/png",
        }
    }

    /// The artifact a location's extension names.
    pub fn of_extension(ext: &str) -> Option<Artifact> {
        Artifact::ALL.into_iter().find(|a| a.extension() == ext)
    }
}

/// Where `artifact` goes next to the CSV result at `csv_location` (`…/1-1.csv` → `…/1-1.svg`);
/// `None` when the location is not a `.csv` result.
pub fn sibling_location(csv_location: &str, artifact: Artifact) -> Option<String> {
    let stem = csv_location.strip_suffix(".csv")?;
    (artifact != Artifact::Csv && !stem.is_empty() && !stem.ends_with('/'))
        .then(|| format!("{stem}.{}", artifact.extension()))
}

/// Why a result could not be stored or read, and whether trying again may help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResultError {
    pub message: String,
    /// A new attempt may succeed (network, throttling, a local I/O hiccup); `false` for what no
    /// retry fixes (access denied, a missing bucket, a location that is not a result).
    pub transient: bool,
}

impl ResultError {
    pub fn permanent(message: impl Into<String>) -> Self {
        ResultError { message: message.into(), transient: false }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        ResultError { message: message.into(), transient: true }
    }
}

/// A result being written: a temp file next to its final local path, removed unless committed.
/// Handed out by [`ResultStore::create`] and finished by [`ResultStore::commit`].
pub struct PendingResult {
    tmp: PathBuf,
    path: PathBuf,
    file: Option<tokio::fs::File>,
    committed: bool,
}

impl PendingResult {
    /// Opens a temp file next to `path` (creating its directory).
    pub async fn create(path: PathBuf) -> Result<Self, ResultError> {
        let io = |what: &str, e: std::io::Error| ResultError::transient(format!("{what} {}: {e}", path.display()));
        let dir =
            path.parent().ok_or_else(|| ResultError::permanent(format!("no directory for {}", path.display())))?;
        tokio::fs::create_dir_all(dir).await.map_err(|e| io("creating the directory of", e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&tmp).await.map_err(|e| io("creating a temp file for", e))?;
        Ok(PendingResult { tmp, path, file: Some(file), committed: false })
    }

    /// The local path the result will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ResultError> {
        use tokio::io::AsyncWriteExt;
        let file = self.file.as_mut().expect("open until committed");
        file.write_all(bytes).await.map_err(|e| ResultError::transient(format!("writing {}: {e}", self.path.display())))
    }

    /// Flushes, syncs and renames into place; returns the final path.
    pub(crate) async fn finish(mut self) -> Result<PathBuf, ResultError> {
        use tokio::io::AsyncWriteExt;
        let path = self.path.clone();
        let err = |e: std::io::Error| ResultError::transient(format!("writing {}: {e}", path.display()));
        let mut file = self.file.take().expect("open until committed");
        file.flush().await.map_err(err)?;
        file.sync_all().await.map_err(err)?;
        drop(file);
        tokio::fs::rename(&self.tmp, &self.path).await.map_err(err)?;
        self.committed = true;
        Ok(path)
    }
}

impl Drop for PendingResult {
    fn drop(&mut self) {
        if !self.committed {
            // Failed, timed out or cancelled: never leave a partial file behind.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Where results live. Locations are what [`ResultStore::commit`] and
/// [`ResultStore::put_next_to`] returned (or what Athena reported); a store refuses to read a
/// location that is not one of its results.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    /// Opens a file for `artifact` of `key`, to be filled and then [`ResultStore::commit`]ted.
    async fn create(&self, key: &ResultKey, artifact: Artifact) -> Result<PendingResult, ResultError>;

    /// Puts a filled result where readers find it and returns its location. Committing the
    /// same key again overwrites it (a re-run after a restart writes the same bytes).
    async fn commit(&self, pending: PendingResult) -> Result<String, ResultError>;

    /// Stores `bytes` as `artifact` next to the CSV result at `csv_location` (see
    /// [`sibling_location`]) and returns where it went. Overwrites, so storing the same artifact
    /// again (a replayed reconcile) is idempotent.
    async fn put_next_to(&self, csv_location: &str, artifact: Artifact, bytes: Vec<u8>) -> Result<String, ResultError>;

    /// Reads a result or artifact; `Ok(None)` without reading it all when `max` is given and it
    /// is larger.
    async fn read(&self, location: &str, max: Option<u64>) -> Result<Option<Vec<u8>>, ResultError>;

    /// The size of a stored result in bytes; `Ok(None)` when there is nothing at `location`.
    async fn size(&self, location: &str) -> Result<Option<u64>, ResultError>;

    /// Feeds a stored result to `visit` chunk by chunk, never holding it whole (row counts of
    /// results too large to read).
    async fn scan(&self, location: &str, visit: &mut (dyn for<'c> FnMut(&'c [u8]) + Send)) -> Result<(), ResultError>;

    /// A URL that lets whoever holds it read the stored artifact at `location` until `ttl` has
    /// passed (an S3 presigned GET), for a chat card's chart image; `Ok(None)` where results have
    /// no such URLs (a local directory) or nothing is stored there.
    async fn presign(&self, location: &str, ttl: std::time::Duration) -> Result<Option<String>, ResultError> {
        let _ = (location, ttl);
        Ok(None)
    }
}

/// Reads a whole result (`sqlctl results`).
pub async fn read_all(store: &dyn ResultStore, location: &str) -> Result<Vec<u8>, ResultError> {
    Ok(store.read(location, None).await?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ResultKey {
        ResultKey { namespace: "default".into(), name: "q".into(), uid: "u1".into(), generation: 2, attempt: 3 }
    }

    #[test]
    fn keys_are_one_path_per_attempt_and_never_leave_the_root() {
        assert_eq!(key().prefix().unwrap(), "default/q/u1/2-3");
        assert_eq!(key().path(Artifact::Chart).unwrap(), "default/q/u1/2-3.svg");
        assert_eq!(key().to_string(), "default/q/u1/2-3");
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            let k = ResultKey { name: bad.into(), ..key() };
            assert!(k.prefix().is_err(), "{bad:?}");
            let k = ResultKey { uid: bad.into(), ..key() };
            assert!(k.path(Artifact::Csv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn artifacts_sit_next_to_csv_results() {
        assert_eq!(sibling_location("/r/default/q/1-1.csv", Artifact::Chart).as_deref(), Some("/r/default/q/1-1.svg"));
        assert_eq!(sibling_location("s3://b/p/id.csv", Artifact::Chart).as_deref(), Some("s3://b/p/id.svg"));
        for loc in ["s3://b/p/", "/r/x.parquet", "/r/.csv", ".csv"] {
            assert_eq!(sibling_location(loc, Artifact::Chart), None, "{loc}");
        }
        assert_eq!(sibling_location("/r/x.csv", Artifact::Csv), None);
        assert_eq!(Artifact::of_extension("svg"), Some(Artifact::Chart));
        assert_eq!(Artifact::of_extension("png"), Some(Artifact::ChartPng));
        assert_eq!(sibling_location("s3://b/p/id.csv", Artifact::ChartPng).as_deref(), Some("s3://b/p/id.png"));
        assert_eq!(Artifact::of_extension("parquet"), None);
    }
}
