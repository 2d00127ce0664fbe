//! Presigned uploads: ask for a URL, PUT the file there, make the job from it.

use std::time::Duration;

use fixtures::servers::{unique, S3Server};
use serde_json::{json, Value};

use crate::helpers::JsonBody;
use crate::helpers::{corpus, problem, spawn_app, use_test_s3_credentials, AppOptions};

/// A presigned upload from ticket to finished job, and its ticket spent once even by racing
/// requests.
pub(crate) async fn presigned_round_trip(app: &crate::helpers::TestApp) {
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    assert_eq!(ticket["method"], "PUT");
    assert!(ticket["expires_at"].as_str().unwrap().ends_with('Z'));
    let put = reqwest::Client::new()
        .put(ticket["url"].as_str().unwrap())
        .body(corpus("jpeg/kodim18.jpg"))
        .send()
        .await
        .unwrap();
    assert!(
        put.status().is_success(),
        "PUT to the upload URL: {}",
        put.status()
    );
    let response = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t", "ops": [{"op": "resize", "width": 100}], "format": "webp"}]} }))
        .send()
        .await
        .unwrap();
    let id = crate::helpers::accepted_id(response).await;
    let job = app.wait_for(&id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["outputs"][0]["width"], 100);
    // An upload makes one job: its id is spent, once, even by racing requests.
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    reqwest::Client::new()
        .put(ticket["url"].as_str().unwrap())
        .body(corpus("jpeg/kodim19.jpg"))
        .send()
        .await
        .unwrap();
    let racing = (0..8).map(|_| {
        app.http
            .post(app.url("/v1/jobs"))
            .json(
                &json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t"}]} }),
            )
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "one job from one upload: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [202, 404].contains(s)),
        "{statuses:?}"
    );
    let again = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t"}]} }))
        .send()
        .await
        .unwrap();
    problem(again, 404, "not_found").await;

    // Not an image: refused like an upload through the gateway.
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    reqwest::Client::new()
        .put(ticket["url"].as_str().unwrap())
        .body("just text")
        .send()
        .await
        .unwrap();
    let refused = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t"}]} }))
        .send()
        .await
        .unwrap();
    problem(refused, 415, "unsupported_media_type").await;
    // Nothing uploaded yet: a clear 400.
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    let early = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t"}]} }))
        .send()
        .await
        .unwrap();
    problem(early, 400, "bad_request").await;
    // ...and the ticket is still good once the file is there.
    reqwest::Client::new()
        .put(ticket["url"].as_str().unwrap())
        .body(corpus("jpeg/kodim20.jpg"))
        .send()
        .await
        .unwrap();
    let late = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t"}]} }))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 202);
}

#[tokio::test]
async fn presigned_uploads_work_against_a_real_s3_server() {
    use_test_s3_credentials();
    let s3 = S3Server::start();
    let bucket = unique("uploads");
    s3.create_bucket(&bucket);
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        storage: Some(format!("s3://{bucket}/prefix")),
        s3_endpoint: Some(s3.endpoint.clone()),
        ..Default::default()
    })
    .await;
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    assert!(
        ticket["url"].as_str().unwrap().starts_with(&s3.endpoint),
        "an S3 presigned URL: {ticket}"
    );
    presigned_round_trip(&app).await;

    // Outputs on S3 are a redirect to a presigned URL, which serves the bytes.
    let id = app
        .submit_ok(
            corpus("jpeg/kodim19.jpg"),
            r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":50}]}]}"#,
        )
        .await;
    let job = app.wait_for(&id, Duration::from_secs(30)).await;
    let response = app
        .http
        .get(job["outputs"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&s3.endpoint) && location.contains("X-Amz-Signature"),
        "{location}"
    );
    let bytes = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        bytes.len() as u64,
        job["outputs"][0]["bytes"].as_u64().unwrap()
    );
    app.stop().await;
}

#[tokio::test]
async fn presigned_uploads_work_with_local_storage_through_the_gateway() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    assert!(
        ticket["url"].as_str().unwrap().starts_with(&app.address),
        "{ticket}"
    );
    presigned_round_trip(&app).await;
    let unknown = app
        .http
        .put(app.url(&format!("/v1/uploads/{}", uuid::Uuid::new_v4())))
        .body("x")
        .send()
        .await
        .unwrap();
    problem(unknown, 404, "not_found").await;
    app.stop().await;
}

#[tokio::test]
async fn a_presigned_upload_over_the_limit_ends_in_413_and_is_deleted() {
    use_test_s3_credentials();
    let s3 = S3Server::start();
    let bucket = unique("oversize");
    s3.create_bucket(&bucket);
    let app = spawn_app(AppOptions {
        storage: Some(format!("s3://{bucket}")),
        s3_endpoint: Some(s3.endpoint.clone()),
        max_upload: Some(50_000),
        ..Default::default()
    })
    .await;
    let photo = corpus("jpeg/kodim01.jpg");
    assert!(photo.len() > 50_000);
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    // S3 takes the PUT (a presigned URL cannot bound the size)...
    let put = reqwest::Client::new()
        .put(ticket["url"].as_str().unwrap())
        .body(photo)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let uploaded = std::fs::read_dir(s3.bucket_dir(&bucket).join("uploads"))
        .unwrap()
        .count();
    assert_eq!(uploaded, 1);
    // ...the job is refused with 413, and the stored object goes.
    let refused = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({ "upload_id": ticket["upload_id"], "spec": {"outputs": [{"name": "t"}]} }))
        .send()
        .await
        .unwrap();
    problem(refused, 413, "too_large").await;
    let left = std::fs::read_dir(s3.bucket_dir(&bucket).join("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "the oversized upload was deleted");
    app.stop().await;
}
