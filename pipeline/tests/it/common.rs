//! Helpers shared by the integration tests.

use std::path::PathBuf;

use image::DynamicImage;
use pipeline::spec::Spec;

pub use fixtures::servers::corpus;

pub fn read_corpus(relative: &str) -> Vec<u8> {
    std::fs::read(corpus(relative)).expect("read corpus file")
}

/// Every file under a corpus directory, sorted.
pub fn corpus_dir(relative: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![corpus(relative)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "empty corpus dir {relative}");
    files
}

pub fn spec(json: &str) -> Spec {
    Spec::from_json(json).unwrap_or_else(|e| panic!("test spec refused: {e}"))
}

/// Decodes output bytes with an independent decoder (the image crate), by their content.
pub fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("output decodes")
}

/// Mean absolute difference per channel between two same-sized RGB images.
pub fn mean_abs_diff(a: &DynamicImage, b: &DynamicImage) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// The Redis the tests share (`$IMAGEPIPE_TEST_REDIS_URL`, default 127.0.0.1:6379); every test
/// isolates itself with its own queue name.
pub fn redis_url() -> String {
    std::env::var("IMAGEPIPE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A URL of one node of the shared test Redis (of a cluster: its first seed node), for what the
/// cluster client does not do (subscriptions: published messages reach every node).
pub fn node_url() -> String {
    match redis_url().strip_prefix("redis+cluster://") {
        Some(nodes) => format!("redis://{}", nodes.split(',').next().unwrap_or_default()),
        None => redis_url(),
    }
}

/// A raw command on the shared test Redis, to look behind (or tamper with) a queue.
pub async fn redis_query<T: redis::FromRedisValue>(cmd: &redis::Cmd) -> T {
    if let Some(nodes) = redis_url().strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
        let client = redis::cluster::ClusterClient::new(nodes).expect("cluster nodes");
        let mut conn = client
            .get_async_connection()
            .await
            .expect("cluster connection");
        return cmd.query_async(&mut conn).await.expect("redis command");
    }
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    cmd.query_async(&mut conn).await.expect("redis command")
}

/// A queue name no other test uses.
pub fn unique_queue(test: &str) -> String {
    format!("test-{test}-{}", uuid::Uuid::new_v4().simple())
}

pub use fixtures::servers::{free_port, RedisServer, S3Server};

/// Settings for a bucket of its own on a test S3 server.
pub fn s3_settings(server: &S3Server, bucket: &str) -> pipeline::storage::S3Settings {
    pipeline::storage::S3Settings {
        bucket: bucket.to_owned(),
        endpoint: Some(server.endpoint.clone()),
        credentials: Some((
            fixtures::servers::S3_ACCESS_KEY.to_owned(),
            fixtures::servers::S3_SECRET_KEY.to_owned(),
        )),
        ..Default::default()
    }
}
