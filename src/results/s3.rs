//! Results in S3, in one of two roles:
//!
//! - [`S3Results::upload_from`]: the local engine's `--results s3://bucket/prefix`. A result is
//!   written to the local directory first (its spool, which keeps a copy), then uploaded to
//!   `<prefix>/<result key>.csv` — one streamed `PutObject`, or a multipart upload read from
//!   disk part by part — before it counts as committed. Only locations under the prefix (or
//!   under the spool) are read back.
//! - [`S3Results::athena`]: where Athena writes. Athena writes its own result files (under
//!   `--results`, or wherever the workgroup enforces), so any `s3://` location it reported is
//!   read, and artifacts go next to it.
//!
//! Failures say whether another attempt may help: access denied and a missing bucket are
//! permanent and name what to check; throttling and network errors are transient.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::byte_stream::Length;

use super::local::LocalResults;
use super::{Artifact, PendingResult, ResultError, ResultKey, ResultStore, sibling_location};
use crate::aws::{self, ErrorClass, S3Uri, SdkError};

/// Files up to this size go to S3 in one `PutObject`; larger ones in parts of this size (more
/// when S3's 10,000-part limit needs it), each streamed from the file.
pub const MULTIPART_PART_SIZE: u64 = 64 * 1024 * 1024;
/// S3's limit on parts per multipart upload.
const MAX_PARTS: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct S3Results {
    client: aws_sdk_s3::Client,
    /// `Some`: results are uploaded under this prefix and only read from under it.
    root: Option<S3Uri>,
    /// Where results are written before they are uploaded (and local copies kept).
    spool: Option<LocalResults>,
    /// Files larger than this go up in parts of (at least) this size.
    part_size: u64,
}

impl S3Results {
    /// The local engine's `--results s3://…`: written to `spool`, then uploaded under `root`.
    pub fn upload_from(client: aws_sdk_s3::Client, root: S3Uri, spool: LocalResults) -> Self {
        S3Results { client, root: Some(root), spool: Some(spool), part_size: MULTIPART_PART_SIZE }
    }

    /// Athena's results, wherever Athena wrote them.
    pub fn athena(client: aws_sdk_s3::Client) -> Self {
        S3Results { client, root: None, spool: None, part_size: MULTIPART_PART_SIZE }
    }

    /// Uploads larger than `bytes` go in parts (tests use S3's 5 MiB minimum).
    #[must_use]
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    fn not_ours(&self, location: &str) -> ResultError {
        let also = self.root.as_ref().map(|r| format!(" and {r}")).unwrap_or_default();
        match &self.spool {
            Some(spool) => spool.not_ours(location, &also),
            None => ResultError::permanent(format!("{location:?} is not a result of this engine (results live in S3)")),
        }
    }

    /// Is `uri` under the results root (always, for Athena's results)?
    fn owns(&self, uri: &S3Uri) -> bool {
        let Some(root) = &self.root else { return true };
        uri.bucket == root.bucket
            && (root.key.is_empty() || uri.key.strip_prefix(&root.key).is_some_and(|k| k.starts_with('/')))
    }

    /// The parsed `s3://` location of a stored result or artifact.
    fn uri(&self, location: &str) -> Result<S3Uri, ResultError> {
        let uri = S3Uri::parse(location).map_err(ResultError::permanent)?;
        let ext_ok = uri.key.rsplit_once('.').is_some_and(|(_, e)| Artifact::of_extension(e).is_some());
        if !self.owns(&uri) || !ext_ok {
            return Err(self.not_ours(location));
        }
        Ok(uri)
    }

    /// The spool for a location that is not in S3.
    fn spool(&self, location: &str) -> Result<&LocalResults, ResultError> {
        self.spool.as_ref().ok_or_else(|| self.not_ours(location))
    }

    /// Uploads the file at `path` to `uri`: one streamed `PutObject`, or a multipart upload.
    async fn upload_file(&self, path: &Path, uri: &S3Uri, content_type: &str) -> Result<(), ResultError> {
        let local = |what: &str, e: &dyn std::fmt::Display| {
            ResultError::transient(format!("uploading {} to {uri}: {what}: {e}", path.display()))
        };
        let size = tokio::fs::metadata(path).await.map_err(|e| local("reading its size", &e))?.len();
        if size <= self.part_size {
            let body = ByteStream::from_path(path).await.map_err(|e| local("opening it", &e))?;
            self.client
                .put_object()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .content_type(content_type)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_failure("PutObject", uri, e))?;
            return Ok(());
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| s3_failure("CreateMultipartUpload", uri, e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(ResultError::transient(format!("S3 CreateMultipartUpload {uri} returned no UploadId")));
        };
        let mut pending =
            PendingUpload { client: self.client.clone(), uri: uri.clone(), upload_id: Some(upload_id.clone()) };
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let sent: Result<(), ResultError> = async {
            while offset < size {
                let len = part_size.min(size - offset);
                let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| local("opening it", &e))?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&uri.bucket)
                    .key(&uri.key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| s3_failure("UploadPart", uri, e))?;
                parts.push(
                    CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_string)).build(),
                );
                offset += len;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| s3_failure("CompleteMultipartUpload", uri, e))?;
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                pending.upload_id = None;
                Ok(())
            }
            Err(e) => {
                pending.abort().await;
                Err(e)
            }
        }
    }

    async fn get(&self, uri: &S3Uri) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, ResultError> {
        self.client
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await
            .map_err(|e| s3_failure("GetObject", uri, e))
    }
}

#[async_trait]
impl ResultStore for S3Results {
    async fn create(&self, key: &ResultKey, artifact: Artifact) -> Result<PendingResult, ResultError> {
        match &self.spool {
            Some(spool) => spool.create(key, artifact).await,
            None => Err(ResultError::permanent(
                "Athena writes its own results: there is nothing to create in its result store",
            )),
        }
    }

    async fn commit(&self, pending: PendingResult) -> Result<String, ResultError> {
        let (Some(spool), Some(root)) = (&self.spool, &self.root) else {
            return Err(ResultError::permanent("Athena writes its own results: there is nothing to commit"));
        };
        let path = pending.finish().await?;
        let (rel, artifact) =
            spool.key_of(&path.display().to_string()).ok_or_else(|| self.not_ours(&path.display().to_string()))?;
        let uri = root.join(&format!("{rel}.{}", artifact.extension()));
        let started = std::time::Instant::now();
        self.upload_file(&path, &uri, artifact.content_type()).await?;
        tracing::info!(location = %uri, ms = started.elapsed().as_millis() as u64, "result uploaded");
        Ok(uri.to_string())
    }

    async fn put_next_to(&self, csv_location: &str, artifact: Artifact, bytes: Vec<u8>) -> Result<String, ResultError> {
        if !csv_location.starts_with("s3://") {
            return self.spool(csv_location)?.put_next_to(csv_location, artifact, bytes).await;
        }
        let target = sibling_location(csv_location, artifact).ok_or_else(|| {
            ResultError::permanent(format!(
                "{csv_location:?} is not a CSV result to store a .{} next to",
                artifact.extension()
            ))
        })?;
        self.uri(csv_location)?;
        let uri = self.uri(&target)?;
        if let (Some(spool), Some(root)) = (&self.spool, &self.root) {
            // The local copy, next to the local CSV.
            let rel = &uri.key[root.key.len()..].trim_start_matches('/');
            LocalResults::write_atomically(spool.root().join(rel), &bytes).await?;
        }
        self.client
            .put_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(artifact.content_type())
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| s3_failure("PutObject", &uri, e))?;
        Ok(target)
    }

    async fn read(&self, location: &str, max: Option<u64>) -> Result<Option<Vec<u8>>, ResultError> {
        if !location.starts_with("s3://") {
            return self.spool(location)?.read(location, max).await;
        }
        let uri = self.uri(location)?;
        let obj = self.get(&uri).await?;
        if max.is_some_and(|m| obj.content_length().is_some_and(|n| u64::try_from(n).unwrap_or(0) > m)) {
            return Ok(None);
        }
        let bytes = obj.body.collect().await.map_err(|e| ResultError::transient(format!("reading {location}: {e}")))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn presign(&self, location: &str, ttl: std::time::Duration) -> Result<Option<String>, ResultError> {
        if !location.starts_with("s3://") || self.size(location).await?.is_none() {
            return Ok(None);
        }
        let uri = self.uri(location)?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| ResultError::permanent(format!("presigning {location}: {e}")))?;
        let signed = self
            .client
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .presigned(config)
            .await
            .map_err(|e| ResultError::transient(format!("presigning {location}: {e}")))?;
        Ok(Some(signed.uri().to_string()))
    }

    async fn size(&self, location: &str) -> Result<Option<u64>, ResultError> {
        if !location.starts_with("s3://") {
            return self.spool(location)?.size(location).await;
        }
        let uri = self.uri(location)?;
        match self.client.head_object().bucket(&uri.bucket).key(&uri.key).send().await {
            Ok(h) => Ok(Some(h.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0))),
            Err(e) if aws::classify(&e) == ErrorClass::NotFound => Ok(None),
            Err(e) => {
                let msg = aws::describe(&e);
                let transient = aws::classify(&e) == ErrorClass::Transient;
                Err(ResultError { message: format!("S3 HeadObject {location}: {msg}"), transient })
            }
        }
    }

    async fn scan(&self, location: &str, visit: &mut (dyn for<'c> FnMut(&'c [u8]) + Send)) -> Result<(), ResultError> {
        if !location.starts_with("s3://") {
            return self.spool(location)?.scan(location, visit).await;
        }
        let uri = self.uri(location)?;
        let mut body = self.get(&uri).await?.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ResultError::transient(format!("reading {location}: {e}")))?;
            visit(&chunk);
        }
        Ok(())
    }
}

/// Classifies a failed S3 call on `uri`: access and missing buckets are permanent and say what
/// to check; a missing object is permanent; everything else is worth another attempt.
fn s3_failure<E>(op: &str, uri: &S3Uri, e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> ResultError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let msg = aws::describe(&e);
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or_default().to_string();
    let action = if op.starts_with("Get") { "s3:GetObject" } else { "s3:PutObject" };
    match aws::classify(&e) {
        ErrorClass::AccessDenied => ResultError::permanent(format!(
            "S3 {op} {uri}: {msg}; check that the credentials sqlctl runs with allow {action} on arn:aws:s3:::{}/{}* (and kms:GenerateDataKey/kms:Decrypt if the bucket uses SSE-KMS)",
            uri.bucket,
            uri.key.rsplit_once('/').map(|(dir, _)| format!("{dir}/")).unwrap_or_default()
        )),
        ErrorClass::NotFound if code == "NoSuchBucket" => ResultError::permanent(format!(
            "S3 {op} {uri}: bucket {} does not exist; create it or fix --results (SQLCTL_RESULTS_S3)",
            uri.bucket
        )),
        ErrorClass::NotFound => ResultError::permanent(format!("S3 {op} {uri}: {msg} (the object no longer exists)")),
        _ => ResultError::transient(format!("S3 {op} {uri}: {msg}")),
    }
}

/// A multipart upload in progress: aborted when it fails, or (best effort, in the background)
/// when the run is dropped half-way (cancel, timeout), so no invisible parts keep costing
/// storage. A bucket lifecycle rule `AbortIncompleteMultipartUpload` is the backstop.
struct PendingUpload {
    client: aws_sdk_s3::Client,
    uri: S3Uri,
    /// `None` once completed or aborted.
    upload_id: Option<String>,
}

impl PendingUpload {
    fn abort_request(
        &self,
        id: &str,
    ) -> aws_sdk_s3::operation::abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder {
        self.client.abort_multipart_upload().bucket(&self.uri.bucket).key(&self.uri.key).upload_id(id)
    }

    async fn abort(&mut self) {
        if let Some(id) = self.upload_id.take()
            && let Err(e) = self.abort_request(&id).send().await
        {
            tracing::warn!(location = %self.uri, error = %aws::describe(&e), "could not abort a failed multipart upload; a lifecycle rule AbortIncompleteMultipartUpload cleans it up");
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let request = self.abort_request(&id);
            rt.spawn(async move {
                let _ = request.send().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::testing::{config_for, moto_url, unique};

    /// Athena's results are read wherever Athena put them, and the chart goes next to the CSV.
    #[tokio::test]
    async fn athena_results_are_read_where_athena_wrote_them_and_charts_go_next_to_them() {
        let Some(url) = moto_url() else { return };
        let conf = config_for(&url).await;
        let client = crate::aws::s3(&conf);
        let bucket = unique("athena-results");
        client.create_bucket().bucket(&bucket).send().await.unwrap();
        let csv = format!("s3://{bucket}/wg/default/q/1-1/abc-123.csv");
        client
            .put_object()
            .bucket(&bucket)
            .key("wg/default/q/1-1/abc-123.csv")
            .body(ByteStream::from_static(b"a,b\n1,2\n"))
            .send()
            .await
            .unwrap();
        let store = S3Results::athena(client);
        let svg = store.put_next_to(&csv, Artifact::Chart, b"<svg/>".to_vec()).await.unwrap();
        assert_eq!(svg, format!("s3://{bucket}/wg/default/q/1-1/abc-123.svg"));
        assert_eq!(store.read(&svg, None).await.unwrap().unwrap(), b"<svg/>");
        assert_eq!(store.read(&csv, Some(100)).await.unwrap().unwrap(), b"a,b\n1,2\n");
        assert_eq!(store.read(&csv, Some(3)).await.unwrap(), None);
        assert_eq!(store.size(&csv).await.unwrap(), Some(8));
        assert_eq!(store.size(&csv.replace("abc", "nope")).await.unwrap(), None);
        let mut seen = Vec::new();
        store.scan(&csv, &mut |c: &[u8]| seen.extend_from_slice(c)).await.unwrap();
        assert_eq!(seen, b"a,b\n1,2\n");
        assert!(store.put_next_to(&format!("s3://{bucket}/x/"), Artifact::Chart, vec![]).await.is_err());
        // A bucket that does not exist: no retry helps.
        let err = store.put_next_to(&format!("s3://{}/x.csv", unique("nope")), Artifact::Chart, vec![]).await;
        assert!(matches!(err, Err(ResultError { transient: false, .. })), "{err:?}");
        // Athena's store holds nothing it did not write.
        assert!(store.read("/etc/passwd.csv", None).await.is_err());

        // A chart image for a chat card: a presigned GET of bounded lifetime, readable by
        // whoever holds the URL; nothing for a PNG that was never stored.
        let png_at = csv.replace(".csv", ".png");
        assert_eq!(store.presign(&png_at, std::time::Duration::from_secs(600)).await.unwrap(), None);
        let png = store.put_next_to(&csv, Artifact::ChartPng, b"\x89PNG-bytes".to_vec()).await.unwrap();
        let url = store.presign(&png, std::time::Duration::from_secs(600)).await.unwrap().expect("a URL");
        assert!(url.contains("X-Amz-Expires=600") && url.contains("X-Amz-Signature="), "{url}");
        let got = reqwest::get(&url).await.unwrap();
        assert!(got.status().is_success(), "{}", got.status());
        assert_eq!(got.bytes().await.unwrap().as_ref(), b"\x89PNG-bytes");
        assert!(store.presign("/etc/passwd.png", std::time::Duration::from_secs(60)).await.unwrap().is_none());
    }
}
