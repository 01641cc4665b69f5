//! Results in a local directory (`<home>/results`): `<root>/<result key>.csv`, the chart next to
//! it. Reads follow symlinks and must land on a `.csv`, `.svg` or `.png` under the root, so a location
//! in a record cannot make `sqlctl results` read any other file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Artifact, PendingResult, ResultError, ResultKey, ResultStore, sibling_location};

#[derive(Clone, Debug)]
pub struct LocalResults {
    root: PathBuf,
}

impl LocalResults {
    /// Results under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        LocalResults { root: std::path::absolute(&root).unwrap_or(root) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `artifact` of `key` is stored.
    pub fn path_of(&self, key: &ResultKey, artifact: Artifact) -> Result<PathBuf, ResultError> {
        Ok(self.root.join(key.path(artifact)?))
    }

    /// The refusal for a location that is not one of these results; `also` names other roots
    /// (an S3 prefix) the caller keeps results under.
    pub(super) fn not_ours(&self, location: &str, also: &str) -> ResultError {
        ResultError::permanent(format!(
            "{location:?} is not a result of this engine (results live under {}{also})",
            self.root.display()
        ))
    }

    /// `location` resolved (symlinks followed) to a stored result under the root.
    async fn resolve(&self, location: &str) -> Result<PathBuf, ResultError> {
        if location.starts_with("s3://") {
            return Err(ResultError::permanent(format!(
                "{location} is in S3, but this sqlctl has no --results s3://bucket/prefix (SQLCTL_RESULTS_S3): set it, with AWS credentials, to read it"
            )));
        }
        let root = tokio::fs::canonicalize(&self.root).await.map_err(|_| self.not_ours(location, ""))?;
        let path = tokio::fs::canonicalize(location).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ResultError::permanent(format!("result {location} no longer exists")),
            _ => ResultError::transient(format!("reading {location}: {e}")),
        })?;
        let ext_ok = path.extension().and_then(|e| e.to_str()).and_then(Artifact::of_extension).is_some();
        if !path.starts_with(&root) || !ext_ok {
            return Err(self.not_ours(location, ""));
        }
        Ok(path)
    }

    /// The key and artifact of a stored location (`<root>/<key>.<ext>`), without touching disk.
    pub(super) fn key_of(&self, location: &str) -> Option<(String, Artifact)> {
        let rel = Path::new(location).strip_prefix(&self.root).ok()?;
        if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            return None;
        }
        let rel = rel.to_str().filter(|r| !r.contains('\\'))?;
        let (stem, ext) = rel.rsplit_once('.')?;
        Some((stem.to_string(), Artifact::of_extension(ext)?))
    }

    /// Writes `bytes` to `path` through a temp file renamed into place.
    pub(super) async fn write_atomically(path: PathBuf, bytes: &[u8]) -> Result<PathBuf, ResultError> {
        let mut file = PendingResult::create(path).await?;
        file.write(bytes).await?;
        file.finish().await
    }
}

#[async_trait]
impl ResultStore for LocalResults {
    async fn create(&self, key: &ResultKey, artifact: Artifact) -> Result<PendingResult, ResultError> {
        PendingResult::create(self.path_of(key, artifact)?).await
    }

    async fn commit(&self, pending: PendingResult) -> Result<String, ResultError> {
        Ok(pending.finish().await?.display().to_string())
    }

    async fn put_next_to(&self, csv_location: &str, artifact: Artifact, bytes: Vec<u8>) -> Result<String, ResultError> {
        let target = sibling_location(csv_location, artifact)
            .filter(|_| matches!(self.key_of(csv_location), Some((_, Artifact::Csv))))
            .ok_or_else(|| self.not_ours(csv_location, ""))?;
        Ok(Self::write_atomically(PathBuf::from(&target), &bytes).await?.display().to_string())
    }

    async fn read(&self, location: &str, max: Option<u64>) -> Result<Option<Vec<u8>>, ResultError> {
        let path = self.resolve(location).await?;
        let io = |e: std::io::Error| ResultError::transient(format!("reading {location}: {e}"));
        if let Some(max) = max
            && tokio::fs::metadata(&path).await.map_err(io)?.len() > max
        {
            return Ok(None);
        }
        tokio::fs::read(&path).await.map(Some).map_err(io)
    }

    async fn size(&self, location: &str) -> Result<Option<u64>, ResultError> {
        match self.resolve(location).await {
            Ok(path) => tokio::fs::metadata(&path)
                .await
                .map(|m| Some(m.len()))
                .map_err(|e| ResultError::transient(format!("reading {location}: {e}"))),
            Err(e) if e.message.ends_with("no longer exists") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn scan(&self, location: &str, visit: &mut (dyn for<'c> FnMut(&'c [u8]) + Send)) -> Result<(), ResultError> {
        use tokio::io::AsyncReadExt;
        let path = self.resolve(location).await?;
        let io = |e: std::io::Error| ResultError::transient(format!("reading {location}: {e}"));
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                return Ok(());
            }
            visit(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ResultKey {
        ResultKey { namespace: "default".into(), name: name.into(), uid: "u".into(), generation: 1, attempt: 0 }
    }

    #[tokio::test]
    async fn results_and_charts_are_written_whole_and_read_only_from_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalResults::new(dir.path().join("results"));
        let mut pending = store.create(&key("q"), Artifact::Csv).await.unwrap();
        pending.write(b"one\n1\n").await.unwrap();
        // Nothing is visible before the commit, and a dropped result leaves nothing behind.
        assert!(!pending.path().exists());
        let location = store.commit(pending).await.unwrap();
        assert_eq!(location, dir.path().join("results/default/q/u/1-0.csv").display().to_string());
        assert_eq!(store.read(&location, None).await.unwrap().unwrap(), b"one\n1\n");
        assert_eq!(store.size(&location).await.unwrap(), Some(6));
        let mut seen = Vec::new();
        store.scan(&location, &mut |c: &[u8]| seen.extend_from_slice(c)).await.unwrap();
        assert_eq!(seen, b"one\n1\n");
        let dropped = store.create(&key("gone"), Artifact::Csv).await.unwrap();
        let dir_of = dropped.path().parent().unwrap().to_path_buf();
        drop(dropped);
        assert_eq!(std::fs::read_dir(dir_of).unwrap().count(), 0, "no temp file left");

        // The chart goes next to the CSV, overwriting on a replay.
        let svg = store.put_next_to(&location, Artifact::Chart, b"<svg/>".to_vec()).await.unwrap();
        assert!(svg.ends_with("default/q/u/1-0.svg"), "{svg}");
        store.put_next_to(&location, Artifact::Chart, b"<svg></svg>".to_vec()).await.unwrap();
        assert_eq!(store.read(&svg, None).await.unwrap().unwrap(), b"<svg></svg>");
        assert_eq!(store.read(&svg, Some(3)).await.unwrap(), None);
        assert_eq!(store.read(&svg, Some(100)).await.unwrap().unwrap(), b"<svg></svg>");

        // Nothing outside the root, or of another kind, is read or written.
        let outside = dir.path().join("secret.csv");
        std::fs::write(&outside, "x").unwrap();
        let parquet = dir.path().join("results/default/q/u/t.parquet");
        std::fs::write(&parquet, "x").unwrap();
        let escape = format!("{}/results/../secret.csv", dir.path().display());
        for bad in [outside.display().to_string(), parquet.display().to_string(), escape.clone(), "/etc/passwd".into()]
        {
            assert!(store.read(&bad, None).await.is_err(), "{bad}");
        }
        assert!(store.put_next_to(&outside.display().to_string(), Artifact::Chart, vec![]).await.is_err());
        assert!(store.put_next_to(&escape, Artifact::Chart, vec![]).await.is_err());
        assert!(store.put_next_to(&svg, Artifact::Chart, vec![]).await.is_err());
        let s3 = store.read("s3://bucket/p/default/q/u/1-0.csv", None).await.unwrap_err().to_string();
        assert!(s3.contains("--results"), "{s3}");
        assert_eq!(store.size(&location.replace("1-0", "9-9")).await.unwrap(), None);
    }
}
