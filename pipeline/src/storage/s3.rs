//! S3 and S3-compatible servers through the AWS SDK: path-style addressing when an endpoint is
//! given, the standard `AWS_*` credential and region chain, timeouts and retries on every call,
//! multipart uploads for large objects, presigned URLs.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};

use super::{
    fill_part, BodyStream, ObjectKey, ObjectMeta, ObjectStream, Presign, StorageError, PART_SIZE,
};

/// How to reach a bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Prepended to every key (no leading or trailing slash).
    pub prefix: String,
    /// An S3-compatible server; path-style addressing is used with it.
    pub endpoint: Option<String>,
    /// The same server as clients reach it (presigned URLs are made for this origin).
    pub public_endpoint: Option<String>,
    /// Access key and secret; `None`: the standard AWS credential chain (`AWS_ACCESS_KEY_ID`...).
    pub credentials: Option<(String, String)>,
    /// Longest one HTTP attempt may take (a stalled server is abandoned and retried).
    pub attempt_timeout: Duration,
    /// Longest a call may take across its retries.
    pub call_timeout: Duration,
    pub max_attempts: u32,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            public_endpoint: None,
            credentials: None,
            attempt_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(120),
            max_attempts: 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    /// Signs URLs for clients: for `public_endpoint` when set (a presigned URL's signature
    /// covers its host, so it cannot be rewritten afterwards).
    presigner: Client,
    settings: Arc<S3Settings>,
}

impl S3Store {
    pub async fn open(settings: S3Settings) -> Result<S3Store, StorageError> {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

        // rustls with ring: TLS for real S3 without building aws-lc.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(settings.attempt_timeout)
            .operation_timeout(settings.call_timeout)
            .build();
        // The region comes from the environment, as the AWS tools read it; S3-compatible servers
        // mostly ignore it. (The SDK's default region chain would also ask the EC2 metadata
        // service, through an HTTP client of its own that this build leaves out.)
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_sdk_s3::config::Region::new(region));
        if let Some((key, secret)) = &settings.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key,
                secret,
                None,
                None,
                "imagepipe",
            ));
        }
        let shared = loader
            .timeout_config(timeouts)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .load()
            .await;
        let client_for = |endpoint: Option<&String>| {
            let mut config = aws_sdk_s3::config::Builder::from(&shared);
            if let Some(endpoint) = endpoint {
                config = config.endpoint_url(endpoint).force_path_style(true);
            }
            Client::from_conf(config.build())
        };
        let client = client_for(settings.endpoint.as_ref());
        let presigner = match &settings.public_endpoint {
            Some(public) => client_for(Some(public)),
            None => client.clone(),
        };
        Ok(S3Store {
            client,
            presigner,
            settings: Arc::new(settings),
        })
    }

    pub fn describe(&self) -> String {
        let endpoint = self
            .settings
            .endpoint
            .as_deref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default();
        if self.settings.prefix.is_empty() {
            format!("s3://{}{endpoint}", self.settings.bucket)
        } else {
            format!(
                "s3://{}/{}{endpoint}",
                self.settings.bucket, self.settings.prefix
            )
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.settings.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.settings.prefix)
        }
    }

    fn strip_prefix<'a>(&self, full: &'a str) -> &'a str {
        if self.settings.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.settings.prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    pub async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let size = data.len() as u64;
        self.client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key.as_str()))
            .content_type(content_type)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| classify(e, key.as_str()))?;
        Ok(ObjectMeta::stored_now(key, size))
    }

    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        mut body: BodyStream<'_>,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        // The first part decides: a body that fits in one part is one PUT.
        let mut part = BytesMut::new();
        if fill_part(&mut part, &mut body).await? {
            return self.put(key, part.freeze(), content_type).await;
        }

        let full_key = self.full_key(key.as_str());
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(&full_key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| classify(e, key.as_str()))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| StorageError::Unavailable("no multipart upload id".into()))?
            .to_owned();
        let uploaded = self
            .upload_parts(&full_key, &upload_id, part, &mut body)
            .await;
        match uploaded {
            Ok((parts, size)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.settings.bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| classify(e, key.as_str()))?;
                Ok(ObjectMeta::stored_now(key, size))
            }
            Err(e) => {
                // Leave nothing behind: parts of an abandoned upload cost storage forever.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.settings.bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        full_key: &str,
        upload_id: &str,
        first: BytesMut,
        body: &mut BodyStream<'_>,
    ) -> Result<(Vec<CompletedPart>, u64), StorageError> {
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut part = first;
        let mut ended = false;
        loop {
            if !ended {
                ended = fill_part(&mut part, body).await?;
            }
            if part.is_empty() {
                break;
            }
            let number = parts.len() as i32 + 1;
            let chunk = part.split_to(part.len().min(PART_SIZE)).freeze();
            size += chunk.len() as u64;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.settings.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| classify(e, full_key))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .build(),
            );
            if ended && part.is_empty() {
                break;
            }
        }
        Ok((parts, size))
    }

    /// GET of the object, or of `range` of it.
    async fn get_object(
        &self,
        key: &ObjectKey,
        range: Option<String>,
    ) -> Result<GetObjectOutput, StorageError> {
        self.client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key.as_str()))
            .set_range(range)
            .send()
            .await
            .map_err(|e| classify(e, key.as_str()))
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        let object = self.get_object(key, None).await?;
        let data = object
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(data.into_bytes())
    }

    pub async fn get_prefix(&self, key: &ObjectKey, len: usize) -> Result<Bytes, StorageError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let object = self
            .get_object(key, Some(format!("bytes=0-{}", len - 1)))
            .await?;
        let data = object
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
            .into_bytes();
        // A server ignoring Range sends everything: keep what was asked for.
        Ok(data.slice(..data.len().min(len)))
    }

    pub async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let source = format!("{}/{}", self.settings.bucket, self.full_key(from.as_str()));
        self.client
            .copy_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(to.as_str()))
            .copy_source(source)
            .send()
            .await
            .map_err(|e| classify(e, from.as_str()))?;
        let size = self.head(to).await?.map_or(0, |m| m.size);
        Ok(ObjectMeta::stored_now(to, size))
    }

    pub async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<(ObjectMeta, ObjectStream), StorageError> {
        let object = self.get_object(key, None).await?;
        let meta = ObjectMeta {
            key: key.to_string(),
            size: object.content_length().unwrap_or(0).max(0) as u64,
            last_modified: object
                .last_modified()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        };
        let stream = futures::stream::try_unfold(object.body, |mut body| async move {
            match body.next().await {
                Some(Ok(chunk)) => Ok(Some((chunk, body))),
                Some(Err(e)) => Err(StorageError::Unavailable(e.to_string())),
                None => Ok(None),
            }
        });
        Ok((meta, Box::pin(stream)))
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await;
        match result {
            Ok(head) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: head.content_length().unwrap_or(0).max(0) as u64,
                last_modified: head
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
            })),
            Err(e) => match classify(e, key.as_str()) {
                StorageError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let result = self
            .client
            .delete_object()
            .bucket(&self.settings.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await;
        match result.map_err(|e| classify(e, key.as_str())) {
            Ok(_) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.settings.bucket)
            .prefix(self.full_key(prefix))
            .max_keys(limit.min(1000) as i32);
        if let Some(after) = after {
            request = request.start_after(self.full_key(after));
        }
        let listing = request.send().await.map_err(|e| classify(e, prefix))?;
        Ok(listing
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ObjectMeta {
                    key: self.strip_prefix(object.key()?).to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object
                        .last_modified()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                })
            })
            .collect())
    }

    pub async fn presign(
        &self,
        key: &ObjectKey,
        method: Presign,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| StorageError::Config(e.to_string()))?;
        let (bucket, full_key) = (&self.settings.bucket, self.full_key(key.as_str()));
        let request = match method {
            Presign::Get => self
                .presigner
                .get_object()
                .bucket(bucket)
                .key(full_key)
                .presigned(config)
                .await
                .map_err(|e| classify(e, key.as_str()))?,
            Presign::Put => self
                .presigner
                .put_object()
                .bucket(bucket)
                .key(full_key)
                .presigned(config)
                .await
                .map_err(|e| classify(e, key.as_str()))?,
        };
        Ok(request.uri().to_owned())
    }

    /// Creates the bucket unless it exists (deployments usually create it beforehand).
    pub async fn create_bucket_if_missing(&self) -> Result<(), StorageError> {
        if self.ping().await.is_ok() {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.settings.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(classify(e, &self.settings.bucket)),
        }
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.settings.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &self.settings.bucket))
    }
}

/// Sorts SDK errors into what the queue needs to know: missing, transient, or refused.
fn classify<E>(error: SdkError<E, HttpResponse>, key: &str) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            let message = service.err().message().unwrap_or("");
            let status = service.raw().status().as_u16();
            match (code, status) {
                ("NoSuchKey" | "NotFound", _) | (_, 404) => StorageError::NotFound(key.to_owned()),
                (
                    "NoSuchBucket"
                    | "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch",
                    _,
                ) => StorageError::Refused(format!("{code}: {message}")),
                (_, 401 | 403) => StorageError::Refused(format!("access denied ({code})")),
                _ => StorageError::Unavailable(
                    format!("{status} {code} {message}").trim().to_owned(),
                ),
            }
        }
        SdkError::TimeoutError(_) => StorageError::Unavailable("timed out".into()),
        _ => StorageError::Unavailable(crate::text::error_chain(&error)),
    }
}
