//! The one-command local setup: with embedded workers, if nothing answers at a local Redis URL
//! and `redis-server` is on PATH, start one as a child (append-only file on, data under
//! `./data/redis`) and stop it on exit.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct LocalRedis {
    child: Child,
}

impl LocalRedis {
    /// `Ok(None)` when a Redis already answers (or the URL is not a local one).
    pub async fn start_if_needed(url: &str) -> Result<Option<LocalRedis>, String> {
        let Ok(parsed) = url::Url::parse(url) else {
            return Ok(None);
        };
        let host = parsed.host_str().unwrap_or("");
        if parsed.scheme() != "redis" || !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Ok(None);
        }
        let port = parsed.port().unwrap_or(6379);
        if answers(port).await {
            return Ok(None);
        }
        let dir = std::path::Path::new("data").join("redis");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "nothing answers there and redis-server cannot be started ({e}); install Redis \
                     (apt-get install redis-server) or start one: redis-server --appendonly yes"
                )
            })?;
        let local = LocalRedis { child };
        for _ in 0..100 {
            if answers(port).await {
                tracing::info!(port, dir = %dir.display(), "started redis-server (append-only file on)");
                return Ok(Some(local));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("started redis-server, but it does not answer".into())
    }
}

async fn answers(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = stream.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        // SIGTERM lets Redis flush its append-only file.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
