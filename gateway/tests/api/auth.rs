//! API keys: every /v1 call needs one when keys are set; a key sees only its own jobs.

use serde_json::Value;

use crate::helpers::JsonBody;
use crate::helpers::{corpus, problem, spawn_app, AppOptions, THUMB_SPEC};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef";

#[tokio::test]
async fn keys_are_required_and_each_sees_only_its_own_jobs() {
    let app = spawn_app(AppOptions {
        api_keys: Some(format!("{ALICE},{BOB}")),
        ..Default::default()
    })
    .await;

    let anonymous = app
        .submit(corpus("jpeg/kodim11.jpg"), Some(THUMB_SPEC))
        .await;
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    problem(anonymous, 401, "unauthorized").await;
    let wrong = app
        .submit_as(
            corpus("jpeg/kodim11.jpg"),
            Some(THUMB_SPEC),
            Some("not-a-real-key-at-all-000"),
        )
        .await;
    problem(wrong, 401, "unauthorized").await;
    for path in ["/v1/jobs", "/v1/dead-letter"] {
        problem(
            app.http.get(app.url(path)).send().await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
    }

    let response = app
        .submit_as(corpus("jpeg/kodim11.jpg"), Some(THUMB_SPEC), Some(ALICE))
        .await;
    let id = crate::helpers::accepted_id(response).await;
    let job_url = app.url(&format!("/v1/jobs/{id}"));

    let mine = app
        .http
        .get(&job_url)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    // Bob gets 404 everywhere, never 403: he cannot even learn the job exists.
    for request in [
        app.http.get(&job_url),
        app.http.delete(&job_url),
        app.http.get(format!("{job_url}/events")),
        app.http.get(format!("{job_url}/outputs/thumb")),
        app.http
            .post(app.url(&format!("/v1/dead-letter/{id}/replay"))),
    ] {
        problem(
            request.bearer_auth(BOB).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    let bobs: Value = app
        .http
        .get(app.url("/v1/jobs"))
        .bearer_auth(BOB)
        .json_body()
        .await;
    assert!(bobs["jobs"].as_array().unwrap().is_empty());
    let alices: Value = app
        .http
        .get(app.url("/v1/jobs"))
        .bearer_auth(ALICE)
        .json_body()
        .await;
    assert_eq!(alices["jobs"][0]["id"], id.as_str());

    // Ops endpoints stay open for probes and scrapers.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The stored owner is a digest, never the key.
    let record = app.queue.get(&id).await.unwrap().unwrap();
    let owner = record.owner.unwrap();
    assert!(!owner.contains("alice") && owner.len() == 24, "{owner}");
    app.stop().await;
}
