//! `POST /v1/frames`: raw buffers in every pixel format, encoded frames, sprites.

use std::time::Duration;

use image::GenericImageView;
use serde_json::Value;

use crate::helpers::{corpus, problem, spawn_app, AppOptions};

/// Two 8x6 frames: solid red, then solid blue, in the given layout.
fn two_frames(format: &str) -> Vec<u8> {
    let (w, h) = (8usize, 6usize);
    let chroma = (w / 2) * (h / 2);
    let frame = |rgb: [u8; 3], yuv: [u8; 3]| -> Vec<u8> {
        match format {
            "rgb24" => rgb.repeat(w * h),
            "rgba" => [rgb[0], rgb[1], rgb[2], 255].repeat(w * h),
            "gray" => vec![rgb[0]; w * h],
            "yuv420p" => [
                vec![yuv[0]; w * h],
                vec![yuv[1]; chroma],
                vec![yuv[2]; chroma],
            ]
            .concat(),
            "nv12" => [vec![yuv[0]; w * h], [yuv[1], yuv[2]].repeat(chroma)].concat(),
            _ => unreachable!(),
        }
    };
    [
        frame([255, 0, 0], [81, 90, 240]),
        frame([0, 0, 255], [41, 240, 110]),
    ]
    .concat()
}

#[tokio::test]
async fn raw_frames_in_every_pixel_format_become_one_output_per_frame() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let spec =
        url::form_urlencoded::byte_serialize(br#"{"outputs":[{"name":"f","format":"png"}]}"#)
            .collect::<String>();
    for format in ["rgb24", "rgba", "gray", "yuv420p", "nv12"] {
        let response = app
            .http
            .post(app.url(&format!(
                "/v1/frames?pixel_format={format}&width=8&height=6&spec={spec}"
            )))
            .header("content-type", "application/octet-stream")
            .body(two_frames(format))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            202,
            "{format}: {}",
            response.text().await.unwrap()
        );
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let job = app.wait_for(&id, Duration::from_secs(30)).await;
        assert_eq!(job["status"], "succeeded", "{format}: {job}");
        let outputs = job["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), 2, "{format}");
        assert_eq!(
            (outputs[0]["frame"].as_u64(), outputs[1]["frame"].as_u64()),
            (Some(0), Some(1))
        );
        let url = outputs[1]["url"].as_str().unwrap();
        assert!(url.ends_with("/outputs/f?frame=1"), "{url}");
        let bytes = app.bytes(url).await;
        let frame = image::load_from_memory(&bytes).unwrap();
        assert_eq!(frame.dimensions(), (8, 6));
        let [r, _, b, _] = frame.get_pixel(4, 3).0;
        if format == "gray" {
            assert_eq!((r, b), (0, 0), "gray frame 1 is black");
        } else {
            assert!(
                b > 200 && r < 40,
                "{format}: frame 1 should be blue, got {:?}",
                frame.get_pixel(4, 3).0
            );
        }
        // An output of a frame job needs its frame.
        let whole = app
            .http
            .get(app.url(&format!("/v1/jobs/{id}/outputs/f")))
            .send()
            .await
            .unwrap();
        problem(whole, 404, "not_found").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn raw_buffers_must_be_whole_frames_of_a_known_layout() {
    let app = spawn_app(AppOptions::default()).await;
    let cases = [
        (
            "pixel_format=rgb24&width=8&height=6&w=4",
            8 * 6 * 3 + 1,
            "bad_request",
            None,
        ),
        (
            "pixel_format=rgb48&width=8&height=6&w=4",
            100,
            "bad_spec",
            Some("pixel_format"),
        ),
        (
            "width=8&height=6&w=4",
            100,
            "bad_spec",
            Some("pixel_format"),
        ),
        (
            "pixel_format=gray&width=0&height=6&w=4",
            100,
            "bad_spec",
            Some("width"),
        ),
        (
            "pixel_format=gray&width=8&w=4",
            100,
            "bad_spec",
            Some("height"),
        ),
    ];
    for (query, len, code, field) in cases {
        let response = app
            .http
            .post(app.url(&format!("/v1/frames?{query}")))
            .body(vec![0u8; len])
            .send()
            .await
            .unwrap();
        let body = problem(response, 400, code).await;
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{query}");
        }
    }
    let huge = app
        .http
        .post(app.url("/v1/frames?pixel_format=gray&width=20000&height=20000&w=4"))
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    problem(huge, 422, "unprocessable_image").await;
    app.stop().await;
}

#[tokio::test]
async fn encoded_frames_make_a_sprite_sheet_and_a_webvtt_track() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let mut form = reqwest::multipart::Form::new().text(
        "spec",
        r#"{"outputs":[{"name":"small","ops":[{"op":"resize","width":96}],"format":"webp"}],"sprite":{"columns":2,"width":64,"interval":0.5}}"#,
    );
    for name in ["kodim13", "kodim14", "kodim15"] {
        form = form.part(
            "frame",
            reqwest::multipart::Part::bytes(corpus(&format!("jpeg/{name}.jpg"))),
        );
    }
    let response = app
        .http
        .post(app.url("/v1/frames"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let id = crate::helpers::accepted_id(response).await;
    let job = app.wait_for(&id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let outputs = job["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small", "small", "small", "sprite", "sprite_vtt"]);
    let sprite = &outputs[3];
    assert_eq!(
        (sprite["width"].as_u64(), sprite["height"].as_u64()),
        (Some(128), Some(86))
    );
    let vtt = app
        .http
        .get(outputs[4]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(vtt.headers()["content-type"], "text/vtt");
    let vtt = vtt.text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert!(
        vtt.contains("00:00:00.500 --> 00:00:01.000\nsprite#xywh=64,0,64,43"),
        "{vtt}"
    );
    assert!(vtt.contains("sprite#xywh=0,43,64,43"), "{vtt}");

    // A frame that is not an image is refused with its index.
    let bad = reqwest::multipart::Form::new()
        .text("spec", r#"{"outputs":[{"name":"a"}]}"#)
        .part(
            "frame",
            reqwest::multipart::Part::bytes(corpus("jpeg/kodim13.jpg")),
        )
        .part(
            "frame",
            reqwest::multipart::Part::bytes(b"not an image".to_vec()),
        );
    let response = app
        .http
        .post(app.url("/v1/frames"))
        .multipart(bad)
        .send()
        .await
        .unwrap();
    let body = problem(response, 415, "unsupported_media_type").await;
    assert!(
        body["detail"].as_str().unwrap().starts_with("frame 1:"),
        "{body}"
    );
    app.stop().await;
}
