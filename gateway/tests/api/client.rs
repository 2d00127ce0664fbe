//! The `imagepipe` client as a real process, against gateway and worker processes (or an
//! in-process gateway with API keys).

use std::path::Path;
use std::process::{Command, Output};

use fixtures::servers::{corpus as corpus_path, free_port};

use crate::helpers::JsonBody;
use crate::helpers::{spawn_app, AppOptions};
use crate::processes::{binary, Cluster};

const SPEC: &str = r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":64}],"format":"webp"},{"name":"small","ops":[{"op":"resize","width":128}]}]}"#;

async fn imagepipe(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(binary("imagepipe"))
            .args(&args)
            .env_remove("IMAGEPIPE_KEY")
            .env_remove("IMAGEPIPE_SERVER")
            .output()
            .expect("imagepipe runs")
    })
    .await
    .unwrap()
}

/// `imagepipe submit --spec SPEC --out OUT INPUT` against the cluster.
async fn submit(cluster: &Cluster, out: &Path, input: &Path) -> Output {
    imagepipe(vec![
        "--server".into(),
        cluster.address.clone(),
        "submit".into(),
        "--spec".into(),
        SPEC.into(),
        "--out".into(),
        out.display().to_string(),
        input.display().to_string(),
    ])
    .await
}

fn copy(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(corpus_path(from), to).unwrap();
}

fn dimensions(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_sends_a_folder_and_downloads_every_output() {
    let cluster = Cluster::start().await;
    let _worker = cluster.worker(&[]);
    let input = cluster.dir.path().join("photos");
    copy("jpeg/kodim05.jpg", &input.join("kodim05.jpg"));
    copy("jpeg/kodim06.jpg", &input.join("nested/kodim06.jpg"));
    copy("formats/4.webp", &input.join("nested/deeper/4.webp"));
    // A video in the folder goes the same way: its outputs are made from its poster.
    copy("video/slideshow-vp8.webm", &input.join("clip.webm"));
    let out = cluster.dir.path().join("out");
    let output = submit(&cluster, &out, &input).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 files: 4 ok (8 outputs"), "{stdout}");
    for stem in ["kodim05", "kodim06", "4"] {
        let thumb = out.join(stem).join("thumb.webp");
        assert_eq!(dimensions(&thumb).0, 64, "{}", thumb.display());
        let small = std::fs::read_dir(out.join(stem))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_stem().unwrap() == "small")
            .unwrap_or_else(|| panic!("no small output for {stem}"));
        assert_eq!(dimensions(&small).0, 128, "{}", small.display());
    }
    // A video's outputs are per frame (its poster is frame 0): NAME/FRAME.EXT.
    assert_eq!(dimensions(&out.join("clip/thumb/0.webp")).0, 64);
    let small = std::fs::read_dir(out.join("clip/small"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_stem().unwrap() == "0")
        .expect("the video's small output");
    assert_eq!(dimensions(&small).0, 128, "{}", small.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_reported_with_its_code_and_the_exit_code_is_not_zero() {
    let cluster = Cluster::start().await;
    let _worker = cluster.worker(&[]);
    let input = cluster.dir.path().join("mixed");
    copy("jpeg/kodim07.jpg", &input.join("good.jpg"));
    std::fs::write(input.join("notes.jpg"), b"this is not an image at all").unwrap();
    // A real PNG cut short: accepted (the header is fine), then the decode fails. (A cut JPEG
    // decodes, grey below the cut, as libjpeg-turbo and libvips do.)
    let photo = std::fs::read(corpus_path("kodak/kodim05.png")).unwrap();
    std::fs::write(input.join("cut.png"), &photo[..photo.len() / 3]).unwrap();
    let out = cluster.dir.path().join("out");
    let output = submit(&cluster, &out, &input).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 files: 1 ok"), "{stdout}");
    assert!(stdout.contains("2 failed"), "{stdout}");
    assert!(stderr.contains("notes.jpg: http_415"), "{stderr}");
    assert!(stderr.contains("cut.png: decode_error"), "{stderr}");
    assert!(out.join("good").join("thumb.webp").exists());
}

#[tokio::test]
async fn readable_errors_when_the_server_is_down_or_the_key_is_wrong() {
    let down = imagepipe(vec![
        "--server".into(),
        format!("http://127.0.0.1:{}", free_port()),
        "status".into(),
        "01J00000000000000000000000".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(!down.status.success());
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:"),
        "{stderr}"
    );

    let app = spawn_app(AppOptions {
        api_keys: Some("right-key-0123456789abcdef".into()),
        ..Default::default()
    })
    .await;
    let refused = imagepipe(vec![
        "--server".into(),
        app.address.clone(),
        "--key".into(),
        "wrong-key-0123456789abcdef".into(),
        "dead-letter".into(),
        "list".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("refused the API key"), "{stderr}");

    let listed = imagepipe(vec![
        "--server".into(),
        app.address.clone(),
        "--key".into(),
        "right-key-0123456789abcdef".into(),
        "dead-letter".into(),
        "list".into(),
    ])
    .await;
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("the dead-letter list is empty"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_throughput_latency_and_cpu_and_drains_a_full_queue() {
    let cluster = Cluster::start().await;
    let gateway_pid = cluster.gateway.child.id();
    let dir = cluster.dir.path().to_owned();
    let photo = corpus_path("jpeg/kodim08.jpg").display().to_string();
    let spec = r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":32}]}]}"#;

    // Drain mode: no worker while uploading; the command starts one once all are accepted.
    let pid_file = dir.join("worker.pid");
    let start_worker = format!(
        "{} {} >{} 2>&1 & echo $! > {}",
        binary("worker").display(),
        cluster.worker_args(&[]).join(" "),
        dir.join("drain-worker.log").display(),
        pid_file.display()
    );
    let bench = |args: &[&str]| {
        let common = [
            "--server",
            &cluster.address,
            "bench",
            "--spec",
            spec,
            "--timeout",
            "60s",
            &photo,
        ];
        imagepipe(common.iter().chain(args).map(|a| a.to_string()).collect())
    };
    let output = bench(&[
        "--count",
        "12",
        "--concurrency",
        "3",
        "--cpu-of",
        &format!("gateway={gateway_pid}"),
        "--after-uploads",
        &start_worker,
    ])
    .await;
    let worker_pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let _ = Command::new("kill").arg(worker_pid.trim()).status();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(
        stdout.contains("drain: uploaded by 3 clients first"),
        "{stdout}"
    );
    assert!(
        stdout.contains("succeeded 12  failed 0  refused 0"),
        "{stdout}"
    );
    assert!(stdout.contains("(first start to last success"), "{stdout}");
    let cpu_line = stdout
        .lines()
        .find(|l| l.contains("CPU ms/image"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        cpu_line.contains("load tool ") && cpu_line.contains("gateway "),
        "{cpu_line}"
    );
    // No job started before the last upload was accepted.
    let jobs: serde_json::Value = cluster
        .http
        .get(format!("{}/v1/jobs?limit=50", cluster.address))
        .json_body()
        .await;
    let jobs = jobs["jobs"].as_array().unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(jobs.len(), 12);
    let stamp = |job: &serde_json::Value, field: &str| {
        humantime::parse_rfc3339(job[field].as_str().unwrap()).unwrap()
    };
    let last_accepted = jobs.iter().map(|j| stamp(j, "created_at")).max().unwrap();
    let first_started = jobs.iter().map(|j| stamp(j, "started_at")).min().unwrap();
    assert!(first_started >= last_accepted, "{jobs:?}");

    // Closed loop beside the engine alone: a ratio is printed.
    let _worker = cluster.worker(&[]);
    let engine = binary("worker").display().to_string();
    let output = bench(&[
        "--count",
        "6",
        "--concurrency",
        "2",
        "--compare-with",
        &engine,
        "--threads",
        "1",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    println!("{stdout}");
    assert!(stdout.contains("closed loop, 2 clients"), "{stdout}");
    let ratio: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pipeline / engine: "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(ratio > 0.0, "{stdout}");
}

#[tokio::test]
async fn status_replay_and_submit_work_with_a_key() {
    const KEY: &str = "client-key-0123456789abcdef";
    let with_key = |args: &[&str], app: &crate::helpers::TestApp| {
        let mut all = vec![
            "--server".to_owned(),
            app.address.clone(),
            "--key".into(),
            KEY.into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        imagepipe(all)
    };
    // A job in the dead-letter list: listed, replayed, and its status shown.
    let app = spawn_app(AppOptions {
        api_keys: Some(KEY.into()),
        ..Default::default()
    })
    .await;
    let response = app
        .submit_as(
            crate::helpers::corpus("jpeg/kodim08.jpg"),
            Some(SPEC),
            Some(KEY),
        )
        .await;
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::helpers::dead_letter_next_job(&app).await;
    let listed = with_key(&["dead-letter", "list"], &app).await;
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success());
    assert!(
        stdout.contains(&id) && stdout.contains("storage_error"),
        "{stdout}"
    );
    let replayed = with_key(&["dead-letter", "replay", &id], &app).await;
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&replayed.stdout).trim(),
        format!("{id} is queued again")
    );
    let status = with_key(&["status", &id], &app).await;
    assert!(status.status.success());
    let job: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (job["id"].as_str(), job["status"].as_str()),
        (Some(id.as_str()), Some("queued"))
    );
    app.stop().await;

    // `submit` sends the key with every upload and download.
    let app = spawn_app(AppOptions {
        api_keys: Some(KEY.into()),
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let dir = fixtures::servers::TempDir::new("imagepipe-client-key");
    copy("jpeg/kodim09.jpg", &dir.path().join("in/kodim09.jpg"));
    let out = dir.path().join("out");
    let input = dir.path().join("in");
    let args = [
        "submit",
        "--spec",
        SPEC,
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ];
    let submitted = with_key(&args, &app).await;
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    assert_eq!(dimensions(&out.join("kodim09/thumb.webp")).0, 64);
    app.stop().await;
}
