//! The `imagepipe` client as a real process, against gateway and worker processes (or an
//! in-process gateway with API keys).

use std::path::Path;
use std::process::{Command, Output};

use fixtures::servers::{corpus as corpus_path, free_port};

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
    let out = cluster.dir.path().join("out");
    let output = imagepipe(vec![
        "--server".into(),
        cluster.address.clone(),
        "submit".into(),
        "--spec".into(),
        SPEC.into(),
        "--out".into(),
        out.display().to_string(),
        input.display().to_string(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 files: 3 ok (6 outputs"), "{stdout}");
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
    let output = imagepipe(vec![
        "--server".into(),
        cluster.address.clone(),
        "submit".into(),
        "--spec".into(),
        SPEC.into(),
        "--out".into(),
        out.display().to_string(),
        input.display().to_string(),
    ])
    .await;
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
