//! A headless Chromium driven through ChromeDriver (WebDriver over HTTP), for the tests of what
//! browsers do: the dashboard, outputs in `<img>` from other origins, CORS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fixtures::servers::free_port;
use serde_json::{json, Value};

use crate::helpers::JsonBody;

/// A WebDriver session on a headless Chromium, through a ChromeDriver on a free port.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

impl Browser {
    pub async fn start() -> Browser {
        let chromedriver = find("chromedriver", "IMAGEPIPE_CHROMEDRIVER");
        let chromium = find("chromium", "IMAGEPIPE_CHROMIUM");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            },
        }}});
        let session: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .json_body()
            .await;
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{id}"),
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let answer: Value = self
            .http
            .request(method, format!("{}{path}", self.session))
            .json(&body)
            .json_body()
            .await;
        answer["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Runs `script` in the page with a callback as its last argument
    /// (`arguments[arguments.length - 1]`), and returns what it passes the callback.
    pub async fn eval_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Waits until `script` returns `expected`.
    pub async fn wait_for(&self, script: &str, expected: Value) {
        let started = Instant::now();
        loop {
            let value = self.eval(script).await;
            if value == expected {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "`{script}` is {value}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let answer: Value = self
            .http
            .get(format!("{}/screenshot", self.session))
            .json_body()
            .await;
        let png = &answer["value"];
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                png.as_str()
                    .unwrap_or_else(|| panic!("no screenshot: {answer}")),
            )
            .unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    pub async fn close(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A program from the environment variable, else from PATH. Missing is an error: `.ci/run`
/// installs Debian's `chromium` and `chromium-driver`.
fn find(program: &str, variable: &str) -> String {
    if let Ok(path) = std::env::var(variable) {
        return path;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join(program);
        if candidate.exists() {
            return candidate.display().to_string();
        }
    }
    panic!("{program} is not installed (apt install chromium chromium-driver, or set {variable})");
}

/// Where test artifacts (screenshots) are kept: `IMAGEPIPE_ARTIFACTS`, else
/// `<target dir>/test-artifacts`.
fn artifacts() -> PathBuf {
    match std::env::var_os("IMAGEPIPE_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_gateway"))
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("test-artifacts"),
    }
}
