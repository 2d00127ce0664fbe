//! One conformance suite, run against both backends: a local directory and a real S3-compatible
//! server (s3s-fs, checking SigV4 signatures) on loopback, each test in its own bucket or
//! directory.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pipeline::storage::{
    BodyError, BodyStream, ObjectKey, Presign, S3Store, Storage, StorageError, PART_SIZE,
};

use fixtures::servers::TempDir;

use crate::common::{redis_query, s3_settings, S3Server};

/// A backend under test, with whatever keeps it alive.
struct Backend {
    storage: Storage,
    _server: Option<S3Server>,
    _dir: Option<TempDir>,
}

async fn local() -> Backend {
    let dir = TempDir::new("imagepipe-local");
    let storage = Storage::open(&format!("file://{}", dir.path().display()), None)
        .await
        .unwrap();
    Backend {
        storage,
        _server: None,
        _dir: Some(dir),
    }
}

async fn s3() -> Backend {
    let server = S3Server::start();
    let bucket = format!("test-{}", uuid::Uuid::new_v4().simple());
    let store = S3Store::open(s3_settings(&server, &bucket)).await.unwrap();
    store.create_bucket_if_missing().await.unwrap();
    let storage = Storage::S3(store);
    storage.ping().await.unwrap();
    Backend {
        storage,
        _server: Some(server),
        _dir: None,
    }
}

fn key(text: &str) -> ObjectKey {
    ObjectKey::parse(text).unwrap()
}

/// Deterministic bytes that are not all alike (catches shifted or swapped parts).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 2_654_435_761) >> 13) as u8)
        .collect()
}

fn chunks(data: &[u8], size: usize) -> BodyStream<'static> {
    let parts: Vec<Result<Bytes, BodyError>> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(parts))
}

macro_rules! conformance {
    ($($backend:ident),*) => {$(
        mod $backend {
            #[tokio::test]
            async fn objects_round_trip() {
                super::objects_round_trip(super::$backend().await).await;
            }
            #[tokio::test]
            async fn large_objects_stream_byte_exact() {
                super::large_objects_stream_byte_exact(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_failing_body_leaves_nothing() {
                super::a_failing_body_leaves_nothing(super::$backend().await).await;
            }
            #[tokio::test]
            async fn listing_pages_in_key_order() {
                super::listing_pages_in_key_order(super::$backend().await).await;
            }
            #[tokio::test]
            async fn prefixes_and_copies() {
                super::prefixes_and_copies(super::$backend().await).await;
            }
            #[tokio::test]
            async fn presigned_urls_work_with_a_plain_http_client() {
                super::presigned_urls_work_with_a_plain_http_client(super::$backend().await).await;
            }
        }
    )*};
}

conformance!(local, s3);

async fn objects_round_trip(backend: Backend) {
    let storage = &backend.storage;
    let k = key("outputs/job-1/thumb.jpg");
    assert!(storage.head(&k).await.unwrap().is_none());
    assert!(matches!(
        storage.get(&k).await,
        Err(StorageError::NotFound(_))
    ));
    let meta = storage
        .put(&k, Bytes::from_static(b"hello"), "image/jpeg")
        .await
        .unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(storage.get(&k).await.unwrap(), Bytes::from_static(b"hello"));
    let head = storage.head(&k).await.unwrap().unwrap();
    assert_eq!(
        (head.key.as_str(), head.size),
        ("outputs/job-1/thumb.jpg", 5)
    );
    // Replacing is allowed, and atomic from a reader's point of view.
    storage
        .put(&k, Bytes::from_static(b"hello again"), "image/jpeg")
        .await
        .unwrap();
    let (meta, mut stream) = storage.get_stream(&k).await.unwrap();
    assert_eq!(meta.size, 11);
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read, b"hello again");
    storage.delete(&k).await.unwrap();
    storage.delete(&k).await.unwrap(); // deleting twice is fine
    assert!(storage.head(&k).await.unwrap().is_none());
}

async fn large_objects_stream_byte_exact(backend: Backend) {
    let storage = &backend.storage;
    // Over two parts, in odd-sized chunks: exercises multipart on S3.
    let data = pattern(2 * PART_SIZE + 12_345);
    let k = key("originals/big");
    let meta = storage
        .put_stream(&k, chunks(&data, 777_777), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(
        storage.head(&k).await.unwrap().unwrap().size,
        data.len() as u64
    );
    let back = storage.get(&k).await.unwrap();
    assert!(back == data, "large object came back different");
    let small = pattern(1000);
    storage
        .put_stream(
            &key("originals/small"),
            chunks(&small, 100),
            "application/octet-stream",
        )
        .await
        .unwrap();
    assert_eq!(storage.get(&key("originals/small")).await.unwrap(), small);
}

async fn a_failing_body_leaves_nothing(backend: Backend) {
    let storage = &backend.storage;
    #[derive(Debug)]
    struct TooLarge;
    impl std::fmt::Display for TooLarge {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("upload over the limit")
        }
    }
    impl std::error::Error for TooLarge {}
    for failing_at in [1000usize, PART_SIZE + 1000] {
        let data = pattern(failing_at);
        let body: BodyStream<'static> =
            Box::pin(chunks(&data, 500_000).chain(futures::stream::once(async {
                Err::<Bytes, BodyError>(Box::new(TooLarge))
            })));
        let k = key("originals/partial");
        match storage
            .put_stream(&k, body, "application/octet-stream")
            .await
        {
            Err(StorageError::Body(e)) => assert!(
                e.downcast_ref::<TooLarge>().is_some(),
                "the body's own error comes back"
            ),
            other => panic!("expected the body error, got {other:?}"),
        }
        assert!(
            storage.head(&k).await.unwrap().is_none(),
            "nothing stored after {failing_at} bytes"
        );
    }
    assert!(
        storage.list("", None, 10).await.unwrap().is_empty(),
        "no temporary files visible"
    );
}

async fn listing_pages_in_key_order(backend: Backend) {
    let storage = &backend.storage;
    for name in ["b", "a", "c/d", "c/e"] {
        storage
            .put(
                &key(&format!("outputs/job-2/{name}")),
                Bytes::from_static(b"x"),
                "text/plain",
            )
            .await
            .unwrap();
    }
    storage
        .put(
            &key("outputs/job-3/z"),
            Bytes::from_static(b"x"),
            "text/plain",
        )
        .await
        .unwrap();
    let all: Vec<String> = storage
        .list("outputs/job-2/", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        all,
        [
            "outputs/job-2/a",
            "outputs/job-2/b",
            "outputs/job-2/c/d",
            "outputs/job-2/c/e"
        ]
    );
    let first = storage.list("outputs/job-2/", None, 2).await.unwrap();
    let rest = storage
        .list("outputs/job-2/", Some(&first[1].key), 100)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 4);
    assert_eq!(rest[0].key, "outputs/job-2/c/d");
    assert_eq!(storage.list("outputs/", None, 100).await.unwrap().len(), 5);
    assert_eq!(storage.delete_prefix("outputs/job-2/").await.unwrap(), 4);
    let left: Vec<String> = storage
        .list("outputs/", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["outputs/job-3/z"]);
}

async fn prefixes_and_copies(backend: Backend) {
    let storage = &backend.storage;
    let data = pattern(300_000);
    let from = key("uploads/u2");
    storage
        .put(&from, Bytes::from(data.clone()), "application/octet-stream")
        .await
        .unwrap();
    assert_eq!(storage.get_prefix(&from, 1000).await.unwrap(), data[..1000]);
    assert_eq!(storage.get_prefix(&from, 10_000_000).await.unwrap(), data);
    let to = key("originals/copied");
    assert_eq!(
        storage.copy(&from, &to).await.unwrap().size,
        data.len() as u64
    );
    assert_eq!(storage.get(&to).await.unwrap(), data);
    assert!(matches!(
        storage.copy(&key("uploads/none"), &to).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        storage.get_prefix(&key("uploads/none"), 10).await,
        Err(StorageError::NotFound(_))
    ));
}

async fn presigned_urls_work_with_a_plain_http_client(backend: Backend) {
    let storage = &backend.storage;
    let k = key("uploads/u1");
    let put = storage
        .presign(&k, Presign::Put, Duration::from_secs(300))
        .await
        .unwrap();
    let get = storage
        .presign(&k, Presign::Get, Duration::from_secs(300))
        .await
        .unwrap();
    let (Some(put), Some(get)) = (put, get) else {
        // A local directory cannot sign URLs: the gateway serves and accepts those bytes itself.
        assert!(matches!(storage, Storage::Local(_)));
        return;
    };
    let http = reqwest::Client::new();
    let body = pattern(100_000);
    let response = http.put(&put).body(body.clone()).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "presigned PUT: {}",
        response.status()
    );
    assert_eq!(storage.get(&k).await.unwrap(), body);
    let response = http.get(&get).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "presigned GET: {}",
        response.status()
    );
    assert_eq!(response.bytes().await.unwrap(), body);
    // A tampered signature is refused.
    let tampered = get.replacen("X-Amz-Signature=", "X-Amz-Signature=0", 1);
    assert!(http
        .get(&tampered)
        .send()
        .await
        .unwrap()
        .status()
        .is_client_error());
}

#[tokio::test]
async fn a_frozen_s3_server_makes_calls_time_out_and_retry_not_hang() {
    let server = S3Server::start();
    let bucket = format!("freeze-{}", uuid::Uuid::new_v4().simple());
    let mut settings = s3_settings(&server, &bucket);
    settings.attempt_timeout = Duration::from_millis(500);
    settings.call_timeout = Duration::from_secs(2);
    let store = S3Store::open(settings).await.unwrap();
    store.create_bucket_if_missing().await.unwrap();
    let storage = Storage::S3(store);
    storage
        .put(
            &key("originals/before"),
            Bytes::from_static(b"1"),
            "text/plain",
        )
        .await
        .unwrap();

    server.signal("STOP");
    let started = Instant::now();
    let frozen = storage
        .put(
            &key("originals/during"),
            Bytes::from_static(b"2"),
            "text/plain",
        )
        .await;
    let waited = started.elapsed();
    server.signal("CONT");
    let e = frozen.expect_err("a frozen server cannot store anything");
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert_eq!(
        e.disposition(),
        pipeline::failure::Disposition::Retry,
        "a job would be retried, not failed"
    );
    assert!(
        waited < Duration::from_secs(5),
        "the call hung for {waited:?}"
    );

    // Back to normal once the server runs again.
    storage
        .put(
            &key("originals/after"),
            Bytes::from_static(b"3"),
            "text/plain",
        )
        .await
        .unwrap();
    assert_eq!(
        storage.get(&key("originals/before")).await.unwrap(),
        Bytes::from_static(b"1")
    );
}

#[tokio::test]
async fn storage_urls_are_checked_when_opened() {
    let e = Storage::open("ftp://somewhere", None).await.unwrap_err();
    assert!(matches!(e, StorageError::Config(_)), "{e}");
    let e = Storage::open("s3://", None).await.unwrap_err();
    assert!(matches!(e, StorageError::Config(_)), "{e}");
    let e = Storage::open("file:///proc/imagepipe-cannot-write-here", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Config(_) | StorageError::Unavailable(_)),
        "{e}"
    );
    // A local store never writes outside its root, whatever it is asked.
    for bad in ["../escape", "/etc/passwd", "a/../../b", "a\0b"] {
        assert!(ObjectKey::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_missing_bucket_or_wrong_key_is_refused_clearly() {
    let server = S3Server::start();
    let missing = S3Store::open(s3_settings(&server, "no-such-bucket"))
        .await
        .unwrap();
    let e = missing.ping().await.unwrap_err();
    assert!(
        matches!(e, StorageError::NotFound(_) | StorageError::Refused(_)),
        "{e}"
    );
    let mut wrong = s3_settings(&server, "whatever");
    wrong.credentials = Some(("nobody".into(), "nothing".into()));
    let wrong = S3Store::open(wrong).await.unwrap();
    let e = wrong.create_bucket_if_missing().await.unwrap_err();
    assert!(matches!(e, StorageError::Refused(_)), "{e}");
}

#[tokio::test]
async fn the_orphan_sweep_deletes_only_objects_whose_job_expired() {
    use pipeline::engine::SourceFormat;
    use pipeline::gc::sweep;
    use pipeline::job::{new_job_id, JobInput, NewJob};
    use pipeline::queue::{Queue, QueueConfig};

    let backend = local().await;
    let storage = &backend.storage;
    let queue = Queue::connect(
        &crate::common::redis_url(),
        QueueConfig {
            name: crate::common::unique_queue("gc"),
            ..QueueConfig::default()
        },
    )
    .await
    .unwrap();
    let alive = new_job_id();
    let expired = new_job_id();
    queue
        .enqueue(&NewJob {
            id: alive.clone(),
            spec: pipeline::spec::Spec::from_json(r#"{"outputs":[{"name":"t"}]}"#).unwrap(),
            input: JobInput::Image {
                key: format!("originals/{alive}"),
                bytes: 1,
                format: SourceFormat::Jpeg,
                width: 1,
                height: 1,
                colour_space: None,
                hdr: None,
            },
            owner: None,
            request_id: None,
        })
        .await
        .unwrap();
    for k in [
        format!("originals/{alive}"),
        format!("outputs/{alive}/t.jpg"),
        format!("originals/{expired}"),
        format!("outputs/{expired}/t.jpg"),
        format!("outputs/{expired}/t/0.jpg"),
        format!("uploads/{}", uuid::Uuid::new_v4()),
    ] {
        storage
            .put(&key(&k), Bytes::from_static(b"12345"), "image/jpeg")
            .await
            .unwrap();
    }

    let young = sweep(storage, &queue, Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!(
        (young.scanned, young.deleted, young.kept, young.too_young),
        (6, 0, 2, 4)
    );
    let dry = sweep(storage, &queue, Duration::ZERO, true).await.unwrap();
    assert_eq!((dry.deleted, dry.deleted_bytes), (4, 20));
    assert_eq!(
        storage.list("", None, 100).await.unwrap().len(),
        6,
        "a dry run deletes nothing"
    );
    let swept = sweep(storage, &queue, Duration::ZERO, false).await.unwrap();
    assert_eq!((swept.deleted, swept.kept), (4, 2));
    let left: Vec<String> = storage
        .list("", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        left,
        [
            format!("originals/{alive}"),
            format!("outputs/{alive}/t.jpg")
        ]
    );
    let _: i64 = redis_query(redis::cmd("DEL").arg(queue.keys().job(&alive))).await;
}
