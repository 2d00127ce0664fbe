//! `worker transform` exactly as API.md describes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::servers::corpus;
use serde_json::Value;

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .output()
        .expect("run worker")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("utf-8 stdout")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("imagepipe-transform-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const SPEC: &str = r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256,"height":256}],"format":"jpeg","quality":80},{"name":"square","ops":[{"op":"resize","width":64,"height":64,"fit":"cover"}],"format":"webp"}],"placeholder":"blurhash"}"#;

#[test]
fn writes_every_output_and_one_line_per_input_in_order() {
    let out = temp_dir("order");
    let broken = out.with_extension("broken.jpg");
    std::fs::write(&broken, b"\xFF\xD8\xFFnot really a jpeg").unwrap();
    let inputs = [
        corpus("jpeg/kodim01.jpg"),
        broken.clone(),
        corpus("exif/Portrait_6.jpg"),
        corpus("kodak/kodim02.png"),
        PathBuf::from("/nonexistent/photo.jpg"),
        corpus("formats/denali.webp"),
    ];
    let mut args = vec!["transform", "--spec", SPEC, "--out", out.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let output = worker(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let lines = lines(&output);
    assert_eq!(lines.len(), inputs.len());
    for (line, input) in lines.iter().zip(&inputs) {
        assert_eq!(
            line["input"],
            input.to_str().unwrap(),
            "lines follow input order"
        );
    }
    let kodim = &lines[0];
    let thumb = &kodim["outputs"][0];
    assert_eq!(
        (
            thumb["name"].as_str(),
            thumb["width"].as_u64(),
            thumb["height"].as_u64()
        ),
        (Some("thumb"), Some(256), Some(171))
    );
    let path = Path::new(thumb["path"].as_str().unwrap());
    assert_eq!(
        path,
        out.join("kodim01/thumb.jpg"),
        "DIR/<input stem>/<output name>.<ext>"
    );
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len() as u64, thumb["bytes"].as_u64().unwrap());
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 256);
    assert!(out.join("kodim01/square.webp").exists());
    assert!(kodim["placeholder"].as_str().is_some_and(|p| !p.is_empty()));

    assert_eq!(lines[1]["error"]["code"], "decode_error", "{}", lines[1]);
    assert!(lines[1].get("outputs").is_none());
    let portrait = &lines[2]["outputs"][0];
    assert!(
        portrait["height"].as_u64() > portrait["width"].as_u64(),
        "EXIF orientation applied"
    );
    assert_eq!(
        lines[3]["outputs"][1]["path"],
        out.join("kodim02/square.webp").to_str().unwrap()
    );
    assert_eq!(
        lines[4]["error"]["code"], "storage_error",
        "unreadable input: {}",
        lines[4]
    );
    assert_eq!(lines[5]["outputs"][0]["width"], 256);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&broken);
}

#[test]
fn a_bad_spec_or_command_line_exits_non_zero() {
    let out = temp_dir("bad");
    let kodim = corpus("jpeg/kodim01.jpg");
    let bad_spec = worker(&[
        "transform",
        "--spec",
        r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":0}]}]}"#,
        "--out",
        out.to_str().unwrap(),
        kodim.to_str().unwrap(),
    ]);
    assert_eq!(bad_spec.status.code(), Some(2));
    assert!(bad_spec.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&bad_spec.stderr);
    assert!(stderr.contains("outputs[0].ops[0].width"), "{stderr}");

    let no_inputs = worker(&["transform", "--spec", SPEC, "--out", out.to_str().unwrap()]);
    assert!(!no_inputs.status.success());
    let unknown_flag = worker(&[
        "transform",
        "--spec",
        SPEC,
        "--out",
        out.to_str().unwrap(),
        "--fast",
        kodim.to_str().unwrap(),
    ]);
    assert!(!unknown_flag.status.success());
    let missing_spec_file = worker(&[
        "transform",
        "--spec",
        "@/nonexistent/spec.json",
        "--out",
        out.to_str().unwrap(),
        kodim.to_str().unwrap(),
    ]);
    assert_eq!(missing_spec_file.status.code(), Some(2));
}

#[test]
fn reads_the_spec_from_a_file_and_keeps_repeated_stems_apart() {
    let out = temp_dir("file");
    std::fs::create_dir_all(&out).unwrap();
    let spec_file = out.join("spec.json");
    std::fs::write(
        &spec_file,
        r#"{"outputs":[{"name":"small","ops":[{"op":"resize","width":32}],"format":"png"}]}"#,
    )
    .unwrap();
    let spec_arg = format!("@{}", spec_file.display());
    let a = corpus("kodak/kodim03.png");
    let b = corpus("jpeg/kodim03.jpg");
    let output = worker(&[
        "transform",
        "--threads",
        "1",
        "--spec",
        &spec_arg,
        "--out",
        out.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let lines = lines(&output);
    assert_eq!(
        lines[0]["outputs"][0]["path"],
        out.join("kodim03/small.png").to_str().unwrap()
    );
    assert_eq!(
        lines[1]["outputs"][0]["path"],
        out.join("kodim03-2/small.png").to_str().unwrap()
    );
    assert!(out.join("kodim03/small.png").exists() && out.join("kodim03-2/small.png").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn takes_video_files_with_frames_times_and_a_sprite() {
    let out = temp_dir("video");
    let spec = r#"{"video":{"frames":{"count":3}},"outputs":[{"name":"thumb","ops":[{"op":"resize","width":160}],"format":"webp"}],"sprite":{"columns":3,"width":80}}"#;
    let rotated = corpus("video/phone-rotated-90.mp4");
    let audio = corpus("video/audio-only.m4a");
    let output = worker(&[
        "transform",
        "--spec",
        spec,
        "--out",
        out.to_str().unwrap(),
        rotated.to_str().unwrap(),
        audio.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = lines(&output);
    let outputs = lines[0]["outputs"].as_array().expect("outputs");
    let frames: Vec<&Value> = outputs.iter().filter(|o| o["name"] == "thumb").collect();
    assert_eq!(frames.len(), 3, "{}", lines[0]);
    let mut last = -1.0;
    for (index, frame) in frames.iter().enumerate() {
        assert_eq!(frame["frame"], index);
        let t = frame["t"].as_f64().expect("t");
        assert!(t > last, "times rise: {}", lines[0]);
        last = t;
        // As displayed: the phone's rotation is applied, so the frames are portrait.
        assert!(frame["height"].as_u64() > frame["width"].as_u64());
        let path = out.join(format!("phone-rotated-90/thumb/{index}.webp"));
        assert_eq!(frame["path"], path.to_str().unwrap());
        assert_eq!(image::open(&path).unwrap().width(), 160);
    }
    let vtt = std::fs::read_to_string(out.join("phone-rotated-90/sprite_vtt.vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert_eq!(vtt.matches(" --> ").count(), 3, "{vtt}");
    assert!(out.join("phone-rotated-90/sprite.jpg").exists());
    assert_eq!(
        lines[1]["error"]["code"], "unsupported_format",
        "{}",
        lines[1]
    );
    let _ = std::fs::remove_dir_all(&out);
}
