//! Helpers shared by the integration tests.

use std::path::PathBuf;

use image::DynamicImage;
use pipeline::spec::Spec;

/// A file of the shared real-image corpus (`../shared/corpus` from the project root, or
/// `$IMAGEPIPE_CORPUS`). Missing corpus files fail the test: they are part of the suite.
pub fn corpus(relative: &str) -> PathBuf {
    let root = std::env::var_os("IMAGEPIPE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    let path = root.join(relative);
    assert!(path.exists(), "corpus file missing: {}", path.display());
    path
}

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

/// A queue name no other test uses.
pub fn unique_queue(test: &str) -> String {
    format!("test-{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A private redis-server with an append-only file (fsync on every write), for tests that kill
/// and restart Redis. Killed when dropped.
pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "imagepipe-redis-{port}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port and data directory, and waits until it answers.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--maxmemory-policy",
                "noeviction",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 16];
                if s.read(&mut buf)
                    .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    /// SIGKILL: no chance to save anything beyond what the AOF already holds.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private s3s-fs server (S3 API over a temporary directory, checking SigV4 signatures) on a
/// free port. Killed when dropped.
pub struct S3Server {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    dir: PathBuf,
    child: std::process::Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "imagepipe-s3-{port}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("s3 dir");
        let (access_key, secret_key) = (
            "imagepipe-test".to_owned(),
            "imagepipe-test-secret".to_owned(),
        );
        let child = std::process::Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect(
                "s3s-fs on PATH (cargo install s3s-fs --version 0.14.1 --features binary --locked)",
            );
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key,
            secret_key,
            dir,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Settings for a bucket of its own on this server.
    pub fn settings(&self, bucket: &str) -> pipeline::storage::S3Settings {
        pipeline::storage::S3Settings {
            bucket: bucket.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            credentials: Some((self.access_key.clone(), self.secret_key.clone())),
            ..Default::default()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
