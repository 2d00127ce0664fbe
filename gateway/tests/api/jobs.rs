//! Submitting, reading, listing, cancelling jobs and fetching outputs.

use std::time::Duration;

use image::GenericImageView;
use serde_json::Value;

use crate::helpers::JsonBody;
use crate::helpers::{corpus, problem, spawn_app, AppOptions, TestApp, THUMB_SPEC};

#[tokio::test]
async fn an_upload_runs_and_its_outputs_come_back_with_caching_headers() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let response = app
        .submit(corpus("jpeg/kodim01.jpg"), Some(THUMB_SPEC))
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["links"]["self"], location);
    assert_eq!(accepted["links"]["events"], format!("{location}/events"));

    let job = app.wait_for(id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        (job["attempts"].as_u64(), job["progress"].as_u64()),
        (Some(1), Some(100))
    );
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(
            job[field].as_str().is_some_and(|t| t.ends_with('Z')),
            "{field}: {job}"
        );
    }
    assert!(job["placeholder"].as_str().is_some_and(|p| p.len() == 28));
    assert!(job.get("error").is_none());
    let outputs = job["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    let thumb = &outputs[0];
    assert_eq!(
        (thumb["name"].as_str(), thumb["content_type"].as_str()),
        (Some("thumb"), Some("image/webp"))
    );
    assert_eq!(
        (thumb["width"].as_u64(), thumb["height"].as_u64()),
        (Some(128), Some(128))
    );

    let response = app
        .http
        .get(thumb["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/webp");
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, thumb["bytes"].as_u64().unwrap());
    assert_eq!(
        image::load_from_memory(&bytes).unwrap().dimensions(),
        (128, 128)
    );

    // Conditional GET: the same ETag gets 304 and no body.
    let again = app
        .http
        .get(thumb["url"].as_str().unwrap())
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let other = app
        .http
        .get(thumb["url"].as_str().unwrap())
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);

    let large = app
        .http
        .get(outputs[1]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(large.headers()["content-type"], "image/jpeg");
    let large = image::load_from_memory(&large.bytes().await.unwrap()).unwrap();
    assert_eq!(large.dimensions(), (400, 267));
    app.stop().await;
}

#[tokio::test]
async fn raw_bodies_take_the_spec_from_the_query_or_the_shorthand() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let response = app
        .http
        .post(app.url("/v1/jobs?w=64&format=png"))
        .header("content-type", "image/jpeg")
        .body(corpus("jpeg/kodim02.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id: Value = response.json().await.unwrap();
    let job = app
        .wait_for(id["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(job["outputs"][0]["name"], "default");
    assert_eq!(
        (
            job["outputs"][0]["width"].as_u64(),
            job["outputs"][0]["content_type"].as_str()
        ),
        (Some(64), Some("image/png"))
    );

    // The Content-Type does not matter: the bytes do.
    let spec = url::form_urlencoded::byte_serialize(
        br#"{"outputs":[{"name":"g","ops":[{"op":"grayscale"},{"op":"resize","height":50}]}]}"#,
    )
    .collect::<String>();
    let response = app
        .http
        .post(app.url(&format!("/v1/jobs?spec={spec}")))
        .header("content-type", "text/plain")
        .body(corpus("kodak/kodim03.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id: Value = response.json().await.unwrap();
    let job = app
        .wait_for(id["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(
        (
            job["outputs"][0]["height"].as_u64(),
            job["outputs"][0]["content_type"].as_str()
        ),
        (Some(50), Some("image/png"))
    );
    app.stop().await;
}

#[tokio::test]
async fn every_client_error_is_a_problem_with_its_status() {
    let app = spawn_app(AppOptions {
        max_upload: Some(300_000),
        ..Default::default()
    })
    .await;
    bad_requests_are_400_and_name_their_field(&app).await;
    unknown_jobs_and_routes_are_404(&app).await;
    uploads_over_the_limit_are_413(&app).await;
    what_is_not_an_image_is_415(&app).await;
    undecodable_images_are_422(&app).await;

    // Nothing refused was stored.
    let stored = std::fs::read_dir(app.storage_dir.join("originals"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "refused uploads left objects behind");
    app.stop().await;
}

/// A raw body POSTed to `path`.
async fn post_raw(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn bad_requests_are_400_and_name_their_field(app: &TestApp) {
    let jpeg = corpus("jpeg/kodim04.jpg");
    // 400: the detail names the field.
    let bad = app
        .submit(
            jpeg.clone(),
            Some(r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":0}]}]}"#),
        )
        .await;
    let body = problem(bad, 400, "bad_spec").await;
    assert_eq!(body["field"], "outputs[0].ops[0].width");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("outputs[0].ops[0].width: "));
    let bad = post_raw(app, "/v1/jobs?w=abc", jpeg.clone()).await;
    assert_eq!(problem(bad, 400, "bad_spec").await["field"], "w");
    let bad = post_raw(app, "/v1/jobs?width=10", jpeg.clone()).await;
    problem(bad, 400, "bad_request").await;
    let bad = post_raw(app, "/v1/jobs", jpeg.clone()).await;
    assert_eq!(problem(bad, 400, "bad_spec").await["field"], "spec");
    let bad = app.submit(jpeg.clone(), Some("{not json")).await;
    problem(bad, 400, "bad_spec").await;
    let sprite = app
        .submit(
            jpeg.clone(),
            Some(r#"{"outputs":[{"name":"a"}],"sprite":{"columns":2,"width":64}}"#),
        )
        .await;
    assert_eq!(problem(sprite, 400, "bad_spec").await["field"], "sprite");
    let bad = app
        .http
        .get(app.url("/v1/jobs?limit=500"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad, 400, "bad_spec").await["field"], "limit");
    let bad = app
        .http
        .get(app.url("/v1/jobs?status=done"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad, 400, "bad_spec").await["field"], "status");
}

async fn unknown_jobs_and_routes_are_404(app: &TestApp) {
    // 404: unknown jobs, malformed ids, unknown outputs and routes.
    for path in [
        "/v1/jobs/0192e1c0-3c4d-7a8b-9c0d-0e1f2a3b4c5d",
        "/v1/jobs/not-a-job",
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/nothing-here",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        problem(response, 404, "not_found").await;
    }
}

async fn uploads_over_the_limit_are_413(app: &TestApp) {
    // 413: early from Content-Length, or while streaming.
    let large = corpus("large/canon_eos1300d_canon-dslr.jpg");
    let too_large = app.submit(large.clone(), Some(THUMB_SPEC)).await;
    problem(too_large, 413, "too_large").await;
    let stream = futures::stream::iter(
        large
            .chunks(64 << 10)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = post_raw(app, "/v1/jobs?w=100", reqwest::Body::wrap_stream(stream)).await;
    problem(chunked, 413, "too_large").await;
}

async fn what_is_not_an_image_is_415(app: &TestApp) {
    // 415: judged by the bytes, whatever the Content-Type says.
    let text = app
        .http
        .post(app.url("/v1/jobs?w=10"))
        .header("content-type", "image/jpeg")
        .body("hello, world")
        .send()
        .await
        .unwrap();
    problem(text, 415, "unsupported_media_type").await;
    // A HEIF image sequence's leading box (the format's own magic) is enough to judge it.
    let sequence = app
        .submit(
            b"\0\0\0\x18ftypmsf1\0\0\0\0mif1msf1".to_vec(),
            Some(THUMB_SPEC),
        )
        .await;
    problem(sequence, 415, "unsupported_media_type").await;
    // A still HEIC is read now: its box alone, with no image, is a damaged image.
    let heic = app
        .submit(
            b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec(),
            Some(THUMB_SPEC),
        )
        .await;
    problem(heic, 422, "unprocessable_image").await;
}

async fn undecodable_images_are_422(app: &TestApp) {
    // 422: over the pixel limit (from the header), or not decodable.
    let bomb = app
        .submit(
            fixtures::png_header_bomb(100_000, 100_000),
            Some(THUMB_SPEC),
        )
        .await;
    let body = problem(bomb, 422, "unprocessable_image").await;
    assert!(
        body["detail"].as_str().unwrap().contains("over the limit"),
        "{body}"
    );
    let sof = post_raw(
        app,
        "/v1/jobs?w=10",
        fixtures::jpeg_sof_bomb(65_000, 65_000),
    )
    .await;
    problem(sof, 422, "unprocessable_image").await;
    let broken = app
        .submit(
            fixtures::truncate(&fixtures::photo_jpeg(100, 100, 80), 0.05),
            Some(THUMB_SPEC),
        )
        .await;
    problem(broken, 422, "unprocessable_image").await;
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let app = spawn_app(AppOptions {
        max_queue_depth: Some(2),
        ..Default::default()
    })
    .await;
    for _ in 0..2 {
        app.submit_ok(corpus("jpeg/kodim05.jpg"), THUMB_SPEC).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await; // past the depth cache
    let full = app
        .submit(corpus("jpeg/kodim05.jpg"), Some(THUMB_SPEC))
        .await;
    let retry_after = full.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(retry_after >= 1);
    problem(full, 429, "queue_full").await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_give_the_same_job() {
    let app = spawn_app(AppOptions::default()).await;
    let send = |body: Vec<u8>, key: &'static str| {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(body))
            .text("spec", THUMB_SPEC);
        app.http
            .post(app.url("/v1/jobs"))
            .header("idempotency-key", key)
            .multipart(form)
            .send()
    };
    let first: Value = send(corpus("jpeg/kodim06.jpg"), "order-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = send(corpus("jpeg/kodim06.jpg"), "order-1").await.unwrap();
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let other = send(corpus("jpeg/kodim07.jpg"), "order-1").await.unwrap();
    problem(other, 409, "conflict").await;
    let listed: Value = app.http.get(app.url("/v1/jobs")).json_body().await;
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        1,
        "one job, not two"
    );
    let originals = std::fs::read_dir(app.storage_dir.join("originals"))
        .unwrap()
        .count();
    assert_eq!(originals, 1, "the repeated upload was not kept");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_queued_job_never_runs() {
    let app = spawn_app(AppOptions::default()).await;
    let id = app.submit_ok(corpus("jpeg/kodim08.jpg"), THUMB_SPEC).await;
    let cancelled = app
        .http
        .delete(app.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let body: Value = cancelled.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    // A worker arriving later drops it.
    let consumer = pipeline::queue::Consumer::new(
        &app.queue,
        &crate::helpers::redis_url(),
        "late".into(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let deliveries = consumer.fetch(10, Duration::ZERO).await.unwrap();
    let started = consumer.start(&deliveries).await.unwrap();
    assert!(started
        .iter()
        .all(|s| matches!(s, pipeline::queue::Started::Dropped { .. })));
    assert_eq!(app.job(&id).await["status"], "cancelled");
    let again = app
        .http
        .delete(app.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "cancelling twice is harmless");
    app.stop().await;
}

#[tokio::test]
async fn a_job_whose_input_vanished_fails_at_once_and_is_not_retried() {
    let app = spawn_app(AppOptions::default()).await;
    let id = app.submit_ok(corpus("jpeg/kodim08.jpg"), THUMB_SPEC).await;
    std::fs::remove_file(app.storage_dir.join("originals").join(&id)).unwrap();
    let mut settings = gateway::Settings::defaults();
    settings.connection.redis_url = crate::helpers::redis_url();
    settings.connection.queue = app.queue.config().name.clone();
    settings.connection.storage = format!("file://{}", app.storage_dir.display());
    settings.embedded_workers = 1;
    let worker = workers::service::Worker::build(settings.embedded_workers().unwrap())
        .await
        .unwrap();
    let (stop, shutdown) = pipeline::shutdown::Shutdown::new();
    let running = tokio::spawn(worker.run_until_stopped(shutdown));
    let job = app.wait_for(&id, Duration::from_secs(10)).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "storage_error");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gone from storage"),
        "{job}"
    );
    assert_eq!(job["attempts"], 1, "not retried: {job}");
    stop.trigger();
    running.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test]
async fn jobs_list_newest_first_with_paging_and_a_status_filter() {
    let app = spawn_app(AppOptions::default()).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.submit_ok(corpus("jpeg/kodim09.jpg"), THUMB_SPEC).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.http
        .delete(app.url(&format!("/v1/jobs/{}", ids[0])))
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => app.url(&format!("/v1/jobs?limit=2&cursor={c}")),
            None => app.url("/v1/jobs?limit=2"),
        };
        let page: Value = app.http.get(url).json_body().await;
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let cancelled: Value = app
        .http
        .get(app.url("/v1/jobs?status=cancelled"))
        .json_body()
        .await;
    let cancelled: Vec<&str> = cancelled["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(cancelled, [ids[0].as_str()]);
    app.stop().await;
}

#[tokio::test]
async fn the_request_id_follows_the_job() {
    let app = spawn_app(AppOptions::default()).await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(corpus("jpeg/kodim10.jpg")),
        )
        .text("spec", THUMB_SPEC);
    let response = app
        .http
        .post(app.url("/v1/jobs"))
        .header("x-request-id", "trace-abc-123")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let body: Value = response.json().await.unwrap();
    let record = app
        .queue
        .get(body["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.request_id.as_deref(), Some("trace-abc-123"));
    let generated = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        generated.headers()["x-request-id"].len(),
        36,
        "a fresh id when the client sends none"
    );
    app.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    let app = spawn_app(AppOptions::default()).await;
    let id = app.submit_ok(corpus("jpeg/kodim22.jpg"), THUMB_SPEC).await;
    crate::helpers::dead_letter_next_job(&app).await;

    let dead: Value = app.http.get(app.url("/v1/dead-letter")).json_body().await;
    let jobs = dead["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["job"]["id"], id.as_str());
    assert_eq!(jobs[0]["job"]["error"]["code"], "storage_error");
    assert!(jobs[0]["failed_at"].as_str().unwrap().ends_with('Z'));

    let replayed = app
        .http
        .post(app.url(&format!("/v1/dead-letter/{id}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 202);
    let job: Value = replayed.json().await.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["attempts"].as_u64()),
        (Some("queued"), Some(0))
    );
    let dead: Value = app.http.get(app.url("/v1/dead-letter")).json_body().await;
    assert!(dead["jobs"].as_array().unwrap().is_empty());
    let twice = app
        .http
        .post(app.url(&format!("/v1/dead-letter/{id}/replay")))
        .send()
        .await
        .unwrap();
    problem(twice, 404, "not_found").await;
    app.stop().await;
}

/// Camera and phone formats over HTTP (API.md, "Formats in"): judged by their bytes; without a
/// `format` TIFF, HEIC and JPEG XL come out as JPEG, BMP as PNG and AVIF as AVIF, at the size
/// they are displayed (HEIF rotation applied by libheif).
#[tokio::test]
async fn camera_format_uploads_come_out_at_their_displayed_size() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..AppOptions::default()
    })
    .await;
    let spec = r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":100}]}]}"#;
    // The colour space the record's `media` names, where the file's description is known.
    for (file, content_type, height, colour) in [
        ("camera/ycbcr_jpeg_8bit.tif", "image/jpeg", 75, None),
        ("camera/rgb-3c-16b.tiff", "image/jpeg", 96, None),
        ("camera/V5_24_Bit.bmp", "image/png", 81, None),
        (
            "camera/IMG_2682.heic",
            "image/jpeg",
            75,
            Some(("display_p3", None)),
        ),
        (
            "camera/samsung-one-ui-6.heic",
            "image/jpeg",
            133,
            Some(("srgb", None)),
        ),
        (
            "camera/8bit-sRGB.avif",
            "image/avif",
            67,
            Some(("srgb", None)),
        ),
        (
            "camera/10bit-HDR-P3-nclx.avif",
            "image/avif",
            152,
            Some(("display_p3", Some("pq"))),
        ),
        (
            "camera/8bit-sRGB.jxl",
            "image/jpeg",
            75,
            Some(("srgb", None)),
        ),
        (
            "large/nikon_d3s_iptc-mess.jpg",
            "image/jpeg",
            67,
            Some(("display_p3", None)),
        ),
        (
            "formats/Channel_digital_image_CMYK_color.jpg",
            "image/jpeg",
            67,
            Some(("cmyk", None)),
        ),
    ] {
        let id = app.submit_ok(corpus(file), spec).await;
        let job = app.wait_for(&id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded", "{file}: {job}");
        if let Some((space, hdr)) = colour {
            assert_eq!(job["media"]["colour_space"], space, "{file}: {job}");
            assert_eq!(job["media"]["hdr"].as_str(), hdr, "{file}: {job}");
        }
        let output = &job["outputs"][0];
        assert_eq!(output["content_type"], content_type, "{file}");
        assert_eq!(
            (output["width"].as_u64(), output["height"].as_u64()),
            (Some(100), Some(height)),
            "{file}"
        );
        let bytes = app.bytes(output["url"].as_str().unwrap()).await;
        if content_type != "image/avif" {
            let image = image::load_from_memory(&bytes).unwrap();
            assert_eq!(image.dimensions(), (100, height as u32), "{file}");
        } else {
            assert_eq!(&bytes[4..12], b"ftypavif", "{file}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn an_animated_upload_comes_back_animated_when_asked() {
    use image::AnimationDecoder;
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..AppOptions::default()
    })
    .await;
    // The shorthand, as curl users send it: an animated WebP of every frame of a 30-frame GIF.
    let response = post_raw(
        &app,
        "/v1/jobs?w=64&format=webp&animated=1",
        corpus("formats/rotating-squares.gif"),
    )
    .await;
    assert_eq!(response.status(), 202);
    let id: Value = response.json().await.unwrap();
    let job = app
        .wait_for(id["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let output = &job["outputs"][0];
    assert_eq!(output["content_type"], "image/webp", "{job}");
    assert_eq!(output["width"], 64, "{job}");
    let bytes = app.bytes(output["url"].as_str().unwrap()).await;
    let decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
    assert!(decoder.has_animation());
    let frames = decoder.into_frames().collect_frames().unwrap();
    assert!(frames.len() > 1, "{} frames", frames.len());
    assert!(frames.iter().all(|f| f.buffer().width() == 64));

    // Without `animated`, the first frame as before.
    let id = app
        .submit_ok(
            corpus("formats/rotating-squares.gif"),
            r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":100}],"format":"webp"}]}"#,
        )
        .await;
    let job = app.wait_for(&id, Duration::from_secs(60)).await;
    let bytes = app.bytes(job["outputs"][0]["url"].as_str().unwrap()).await;
    let decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
    assert!(!decoder.has_animation());
    app.stop().await;
}
