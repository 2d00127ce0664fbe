//! Video files over HTTP, with Debian's ffmpeg as the decoder: every file of
//! `../shared/corpus/video/` with the outcome its SOURCES.md row asks for, each way of choosing
//! frames, sprites with real times, and hostile videos made here (seeded).

use std::time::{Duration, Instant};

use image::GenericImageView;
use serde_json::{json, Value};

use crate::helpers::{corpus, spawn_app, AppOptions, JsonBody, TestApp};

const THUMB: &str = r#"{"name":"thumb","ops":[{"op":"resize","width":320}],"format":"jpeg"}"#;

/// Uploads `video` with `spec` and waits for the job to end.
async fn run(app: &TestApp, video: Vec<u8>, spec: &str) -> Value {
    let id = app.submit_ok(video, spec).await;
    app.wait_for(&id, Duration::from_secs(60)).await
}

fn spec(video: Option<Value>, extra: &str) -> String {
    let video = video
        .map(|v| format!(r#""video":{v},"#))
        .unwrap_or_default();
    format!(r#"{{{video}"outputs":[{THUMB}]{extra}}}"#)
}

/// The image behind an output URL.
async fn fetch_image(app: &TestApp, url: &str) -> image::DynamicImage {
    let bytes = app.bytes(url).await;
    image::load_from_memory(&bytes).expect("an output image")
}

fn mean_luma(image: &image::DynamicImage) -> f64 {
    let gray = image.to_luma8();
    gray.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / f64::from(gray.width() * gray.height())
}

#[tokio::test]
async fn every_corpus_video_gets_the_outcome_its_row_asks_for() {
    let app = spawn_app(AppOptions {
        embedded_workers: 2,
        ..Default::default()
    })
    .await;
    // file, codec, container, size as displayed
    let decodable = [
        ("slideshow-h264-aac.mp4", "h264", "mp4", (1280, 720), true),
        ("slideshow-vp9-opus.webm", "vp9", "webm", (640, 360), true),
        ("slideshow-av1.mp4", "av1", "mp4", (640, 360), false),
        ("slideshow-hevc10.mov", "hevc", "mov", (1920, 1080), false),
        ("slideshow-vp8.webm", "vp8", "webm", (320, 180), false),
        ("phone-rotated-90.mp4", "h264", "mp4", (720, 1280), false),
        ("anamorphic-sar.mp4", "h264", "mp4", (1024, 576), false),
        ("vfr.mkv", "h264", "mkv", (1280, 720), false),
        ("black-start.mp4", "h264", "mp4", (1280, 720), false),
        ("resolution-change.ts", "h264", "ts", (640, 360), false),
        ("two-hours-64px.mp4", "h264", "mp4", (64, 64), false),
    ];
    let full_size = r#"{"outputs":[{"name":"frame","format":"png"}]}"#;
    for (file, codec, container, (width, height), audio) in decodable {
        let job = run(&app, corpus(&format!("video/{file}")), full_size).await;
        assert_eq!(job["status"], "succeeded", "{file}: {job}");
        let media = &job["media"];
        assert_eq!(
            (
                media["kind"].as_str(),
                media["codec"].as_str(),
                media["container"].as_str()
            ),
            (Some("video"), Some(codec), Some(container)),
            "{file}: {media}"
        );
        assert_eq!(media["has_audio"], audio, "{file}");
        assert!(media["duration"].as_f64().unwrap() > 0.0, "{file}");
        // Frames come out as displayed: rotation and sample aspect applied.
        assert_eq!(
            (media["width"].as_u64(), media["height"].as_u64()),
            (Some(width), Some(height)),
            "{file}"
        );
        let output = &job["outputs"][0];
        assert_eq!(
            (output["frame"].as_u64(), output["name"].as_str()),
            (Some(0), Some("frame"))
        );
        let image = fetch_image(&app, output["url"].as_str().unwrap()).await;
        if file != "resolution-change.ts" {
            assert_eq!(image.dimensions(), (width as u32, height as u32), "{file}");
        }
    }
    for file in ["audio-only.m4a", "no-video-stream.mp4"] {
        let job = run(&app, corpus(&format!("video/{file}")), full_size).await;
        assert_eq!(
            (
                job["status"].as_str(),
                job["error"]["code"].as_str(),
                job["attempts"].as_u64()
            ),
            (Some("failed"), Some("unsupported_format"), Some(1)),
            "{file}: {job}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_poster_of_a_video_that_starts_black_is_not_black() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let job = run(&app, corpus("video/black-start.mp4"), &spec(None, "")).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let poster = &job["outputs"][0];
    assert!(
        poster["t"].as_f64().unwrap() >= 3.0,
        "after the 3 s of black: {poster}"
    );
    let image = fetch_image(&app, poster["url"].as_str().unwrap()).await;
    assert!(
        mean_luma(&image) > 40.0,
        "a picture, not black: {}",
        mean_luma(&image)
    );
    app.stop().await;
}

#[tokio::test]
async fn frames_are_chosen_every_s_by_count_at_times_keyframes_and_scenes() {
    let app = spawn_app(AppOptions {
        embedded_workers: 2,
        ..Default::default()
    })
    .await;
    let slideshow = || corpus("video/slideshow-h264-aac.mp4");
    let times = |job: &Value| -> Vec<f64> {
        job["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["name"] == "thumb")
            .map(|o| o["t"].as_f64().unwrap())
            .collect()
    };
    let close = |got: &[f64], want: &[f64]| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.05)
    };
    let every = run(
        &app,
        slideshow(),
        &spec(Some(json!({"frames": {"every": 3}})), ""),
    )
    .await;
    assert!(close(&times(&every), &[0.0, 3.0, 6.0, 9.0]), "{every}");
    let count = run(
        &app,
        slideshow(),
        &spec(Some(json!({"frames": {"count": 4}})), ""),
    )
    .await;
    assert!(close(&times(&count), &[1.5, 4.5, 7.5, 10.5]), "{count}");
    let at = run(
        &app,
        slideshow(),
        &spec(Some(json!({"frames": {"at": [7.25, 0.5]}})), ""),
    )
    .await;
    assert!(close(&times(&at), &[0.5, 7.25]), "{at}");
    // Six 2-second scenes, each starting on a keyframe.
    let scenes = run(
        &app,
        slideshow(),
        &spec(Some(json!({"frames": {"scenes": 0.3}})), ""),
    )
    .await;
    assert!(
        close(&times(&scenes), &[0.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
        "{scenes}"
    );
    let keyframes = run(
        &app,
        slideshow(),
        &spec(Some(json!({"frames": "keyframes"})), ""),
    )
    .await;
    assert!(times(&keyframes).len() >= 6, "{keyframes}");
    // Thinned, never refused.
    let thinned = run(
        &app,
        slideshow(),
        &spec(Some(json!({"frames": {"every": 0.5}, "max_frames": 5})), ""),
    )
    .await;
    assert!(
        close(&times(&thinned), &[0.0, 3.0, 6.0, 8.5, 11.5]),
        "{thinned}"
    );
    // Variable frame rate: the times are the stream's.
    let vfr = run(
        &app,
        corpus("video/vfr.mkv"),
        &spec(Some(json!({"frames": {"every": 1}})), ""),
    )
    .await;
    let got = times(&vfr);
    assert_eq!(got.len(), 6, "{vfr}");
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, t)| (t - i as f64).abs() < 0.2),
        "{got:?}"
    );
    // A frame is fetched with ?frame=N.
    let second = &every["outputs"][1];
    let url = second["url"].as_str().unwrap();
    assert!(url.ends_with("?frame=1"), "{url}");
    assert_eq!(app.http.get(url).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_video_sprite_carries_the_frames_real_times() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let sprite = r#","sprite":{"columns":3,"width":100}"#;
    let job = run(
        &app,
        corpus("video/slideshow-h264-aac.mp4"),
        &spec(Some(json!({"frames": {"every": 4}})), sprite),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let outputs = job["outputs"].as_array().unwrap();
    let sheet = outputs.iter().find(|o| o["name"] == "sprite").unwrap();
    assert_eq!(
        (sheet["width"].as_u64(), sheet["height"].as_u64()),
        (Some(300), Some(56))
    );
    let track = outputs.iter().find(|o| o["name"] == "sprite_vtt").unwrap();
    let vtt = app
        .http
        .get(track["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    for cue in [
        "00:00:00.000 --> 00:00:04.000",
        "00:00:04.000 --> 00:00:08.000",
        "00:00:08.000 --> 00:00:12.000",
    ] {
        assert!(vtt.contains(cue), "{cue} in {vtt}");
    }
    app.stop().await;
}

#[tokio::test]
async fn ten_frames_of_two_hours_take_seconds_not_hours() {
    let app = spawn_app(AppOptions {
        embedded_workers: 2,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let job = run(
        &app,
        corpus("video/two-hours-64px.mp4"),
        &spec(Some(json!({"frames": {"count": 10}})), ""),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["outputs"].as_array().unwrap().len(), 10);
    let last = job["outputs"][9]["t"].as_f64().unwrap();
    assert!(
        (last - 6840.0).abs() < 1.5,
        "the last of ten spread over 7200 s: {last}"
    );
    // A bound, not a benchmark: decoding two hours would take far longer than this.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

/// Seeded bytes: xorshift.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// An MP4 with its `moov` box cut out (top-level boxes walked by their sizes).
fn without_moov(mp4: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as usize;
        let size = if size < 8 {
            mp4.len() - at
        } else {
            size.min(mp4.len() - at)
        };
        if &mp4[at + 4..at + 8] != b"moov" {
            out.extend_from_slice(&mp4[at..at + size]);
        }
        at += size;
    }
    out
}

/// Hostile videos: each ends in a coded outcome, at once (never retried), and the worker
/// carries on.
fn hostile_videos() -> Vec<(String, Vec<u8>)> {
    let mp4 = corpus("video/slideshow-vp8.webm");
    let h264 = corpus("video/anamorphic-sar.mp4");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for fraction in [0.02, 0.1, 0.5, 0.9] {
        let cut = (h264.len() as f64 * fraction) as usize;
        cases.push((format!("mp4 truncated at {fraction}"), h264[..cut].to_vec()));
        let cut = (mp4.len() as f64 * fraction) as usize;
        cases.push((format!("webm truncated at {fraction}"), mp4[..cut].to_vec()));
    }
    for seed in 1..=6u64 {
        let mut mutated = h264.clone();
        let positions = noise(seed, 64);
        for pair in positions.chunks(2) {
            let at = (usize::from(pair[0]) << 8 | usize::from(pair[1])) * 7 % mutated.len();
            mutated[at] ^= 0x5a;
        }
        cases.push((format!("mp4 with 32 bytes flipped (seed {seed})"), mutated));
    }
    let mut garbage = h264[..64].to_vec();
    garbage.extend(noise(99, 200_000));
    cases.push(("a valid header, then garbage".into(), garbage));
    cases.push(("an mp4 without its moov".into(), without_moov(&h264)));
    let mut ebml = vec![0x1A, 0x45, 0xDF, 0xA3];
    ebml.extend(noise(7, 50_000));
    cases.push(("an EBML header, then noise".into(), ebml));
    cases
}

#[tokio::test]
async fn hostile_videos_end_with_a_code_at_once_and_the_worker_carries_on() {
    let app = spawn_app(AppOptions {
        embedded_workers: 2,
        ..Default::default()
    })
    .await;
    let spec = spec(Some(json!({"frames": {"count": 3}})), "");
    for (name, bytes) in hostile_videos() {
        let started = Instant::now();
        let id = app.submit_ok(bytes, &spec).await;
        let job = app.wait_for(&id, Duration::from_secs(60)).await;
        let code = job["error"]["code"].as_str().unwrap_or("");
        assert!(
            job["status"] == "succeeded"
                || (job["status"] == "failed"
                    && ["decode_error", "unsupported_format", "pixel_limit"].contains(&code)),
            "{name}: {job}"
        );
        assert_eq!(job["attempts"], 1, "{name}: never retried: {job}");
        println!(
            "HOSTILE VIDEO {name}: {} {code} in {:.2} s",
            job["status"].as_str().unwrap(),
            started.elapsed().as_secs_f64()
        );
    }
    // The worker is fine: the next job succeeds.
    let job = run(&app, corpus("video/slideshow-vp8.webm"), &spec).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    app.stop().await;
}

#[tokio::test]
async fn frames_over_the_pixel_limit_and_videos_over_the_duration_limit_are_refused() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        max_pixels: Some(500_000),
        max_video_duration: Some(Duration::from_secs(3600)),
        ..Default::default()
    })
    .await;
    let big = run(
        &app,
        corpus("video/slideshow-h264-aac.mp4"),
        &spec(None, ""),
    )
    .await;
    assert_eq!(big["error"]["code"], "pixel_limit", "{big}");
    let long = run(&app, corpus("video/two-hours-64px.mp4"), &spec(None, "")).await;
    assert_eq!(long["error"]["code"], "duration_limit", "{long}");
    assert_eq!(
        (big["attempts"].as_u64(), long["attempts"].as_u64()),
        (Some(1), Some(1))
    );
    app.stop().await;
}

#[tokio::test]
async fn uploads_are_judged_by_their_bytes() {
    let app = spawn_app(AppOptions::default()).await;
    let text = app
        .submit(
            b"just some text, not a video".to_vec(),
            Some(&spec(None, "")),
        )
        .await;
    let body: Value = text.json().await.unwrap();
    assert_eq!(body["code"], "unsupported_media_type", "{body}");
    // A video is taken however it is labelled, in a raw body too.
    let raw = app
        .http
        .post(app.url("/v1/jobs?w=64&format=webp"))
        .header("content-type", "application/octet-stream")
        .body(corpus("video/slideshow-vp8.webm"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 202);
    // A sprite needs frames: refused for an image, taken for a video.
    let sprite = r#","sprite":{"columns":2,"width":64}"#;
    let image = app
        .submit(corpus("jpeg/kodim01.jpg"), Some(&spec(None, sprite)))
        .await;
    assert_eq!(image.status(), 400);
    let video = app
        .submit(
            corpus("video/slideshow-vp8.webm"),
            Some(&spec(None, sprite)),
        )
        .await;
    assert_eq!(video.status(), 202);
    let listed: Value = app.http.get(app.url("/v1/jobs")).json_body().await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// The decoders (ffmpeg processes, primed or not) that `worker` (a pid) runs right now, once
/// there is one.
fn decoders_of(worker: u32, limit: Duration) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let decoders: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let parent = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                parent == Some(worker) && is_decoder(*pid)
            })
            .collect();
        if !decoders.is_empty() {
            return decoders;
        }
        assert!(
            started.elapsed() < limit,
            "no decoder under worker {worker}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live (not zombie) ffmpeg.
fn is_decoder(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rfind(')')
        .is_some_and(|i| stat[i + 2..].starts_with('Z'));
    let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let program = command.split(|b| *b == 0).next().unwrap_or_default();
    !zombie && String::from_utf8_lossy(program).ends_with("ffmpeg")
}

#[tokio::test]
async fn no_decoder_outlives_a_killed_or_stopped_worker() {
    let cluster = crate::processes::Cluster::start().await;
    // Hundreds of frames, one after another: decoders run back to back for many seconds.
    let spec = spec(
        Some(json!({"frames": {"every": 0.04}, "max_frames": 2000})),
        "",
    );
    cluster
        .submit(corpus("video/slideshow-h264-aac.mp4"), &spec)
        .await;
    for signal in ["KILL", "TERM"] {
        let mut worker = cluster.worker(&["--shutdown-timeout", "1s"]);
        let pid = worker.child.id();
        let decoders = decoders_of(pid, Duration::from_secs(20));
        let alive = || decoders.iter().filter(|pid| is_decoder(**pid)).count();
        let signalled = Instant::now();
        worker.signal(signal);
        worker
            .wait_exit(Duration::from_secs(15))
            .expect("the worker exits");
        let mut left = alive();
        while left > 0 && signalled.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
            left = alive();
        }
        println!(
            "DECODER after SIG{signal} of its worker: {left} of {} left, {:.2} s after the signal",
            decoders.len(),
            signalled.elapsed().as_secs_f64()
        );
        assert_eq!(left, 0, "a decoder outlived its worker (SIG{signal})");
    }
    cluster.queue.purge().await.ok();
}

#[tokio::test]
async fn a_video_job_reports_progress_frame_by_frame() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..AppOptions::default()
    })
    .await;
    let frames = json!({"count": 48});
    let spec = spec(Some(json!({ "frames": frames })), "");
    let id = app
        .submit_ok(corpus("video/slideshow-h264-aac.mp4"), &spec)
        .await;
    let events = app.url(&format!("/v1/jobs/{id}/events"));
    let mut rx = crate::events::follow(&app.http, &events).await;
    let mut seen = Vec::new();
    let last = loop {
        let event = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("an event")
            .expect("the stream stays open until the job ends");
        if let Some(p) = event["progress"].as_u64() {
            seen.push(p);
        }
        if event["status"] == "succeeded" || event["status"] == "failed" {
            break event;
        }
    };
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["outputs"].as_array().unwrap().len(), 48);
    // Rendering moves the figure as frames are done (reported a few times a second), never
    // backwards.
    let rendering: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|p| (11..90).contains(p))
        .collect();
    assert!(rendering.len() >= 2, "progress seen: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
}

#[tokio::test]
async fn a_hundred_frames_on_one_engine_thread_come_out_whole() {
    // One decoder for all of them: its frame selection is split into passes (ffmpeg refuses
    // a `select` expression of ~95 times or more).
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..AppOptions::default()
    })
    .await;
    let spec = r#"{"video":{"frames":{"count":100},"max_frames":100},
        "outputs":[{"name":"f","ops":[{"op":"resize","width":32}],"format":"jpeg"}]}"#;
    let job = run(&app, corpus("video/slideshow-h264-aac.mp4"), spec).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let outputs = job["outputs"].as_array().unwrap();
    // 100 times over 12 s of 30 fps: every one falls on a frame of its own.
    assert_eq!(outputs.len(), 100, "{job}");
    let times: Vec<f64> = outputs.iter().map(|o| o["t"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    app.stop().await;
}
