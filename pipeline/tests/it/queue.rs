//! The queue and result store against a real Redis.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline::engine::SourceFormat;
use pipeline::failure::{Disposition, FailureCode};
use pipeline::job::{new_job_id, JobError, JobInput, JobRecord, JobStatus, NewJob, OutputRecord};
use pipeline::queue::{
    CancelOutcome, Completed, Consumer, Enqueuer, HeldFrom, IdempotencyClaim, LeaseState, Outcome,
    Queue, QueueConfig, QueueError, Started, WorkerInfo,
};
use pipeline::spec::{Priority, Spec};

use crate::common::{redis_query, redis_url, unique_queue, RedisServer};

fn config(name: &str) -> QueueConfig {
    QueueConfig {
        name: name.to_owned(),
        visibility_timeout: Duration::from_secs(1),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(2),
        call_timeout: Duration::from_secs(2),
        ..QueueConfig::default()
    }
}

async fn queue_at(url: &str, test: &str, tweak: impl FnOnce(&mut QueueConfig)) -> Queue {
    let mut config = config(&unique_queue(test));
    tweak(&mut config);
    Queue::connect(url, config).await.expect("connect to redis")
}

pub(crate) async fn queue(test: &str) -> Queue {
    queue_at(&redis_url(), test, |_| {}).await
}

pub(crate) async fn consumer(queue: &Queue, url: &str) -> Consumer {
    Consumer::new(
        queue,
        url,
        uuid::Uuid::new_v4().to_string(),
        Duration::from_secs(1),
    )
    .await
    .expect("consumer")
}

pub(crate) fn new_job(priority: Priority, owner: Option<&str>) -> NewJob {
    let id = new_job_id();
    let mut spec =
        Spec::from_json(r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":64}]}]}"#)
            .unwrap();
    spec.priority = priority;
    NewJob {
        input: JobInput::Image {
            key: format!("originals/{id}"),
            bytes: 1234,
            format: SourceFormat::Jpeg,
            width: 640,
            height: 480,
            colour_space: None,
            hdr: None,
        },
        id,
        spec,
        owner: owner.map(str::to_owned),
        request_id: Some("req-1".into()),
    }
}

fn output(job: &str) -> OutputRecord {
    OutputRecord {
        t: None,
        name: "thumb".into(),
        frame: None,
        content_type: "image/jpeg".into(),
        width: 64,
        height: 48,
        bytes: 999,
        key: format!("outputs/{job}/thumb.jpg"),
        etag: "\"abc\"".into(),
    }
}

/// One round of a minimal worker: fetch (and reclaim), start, run `handler`, complete.
/// Returns the jobs it ran.
pub(crate) async fn work_once(
    consumer: &Consumer,
    handler: &(dyn Fn(&JobRecord) -> Outcome + Sync),
) -> Vec<String> {
    let mut deliveries = consumer.reclaim(16).await.unwrap_or_default();
    deliveries.extend(
        consumer
            .fetch(16, Duration::from_millis(100))
            .await
            .unwrap_or_default(),
    );
    let Ok(started) = consumer.start(&deliveries).await else {
        return Vec::new();
    };
    let mut done = Vec::new();
    let mut ran = Vec::new();
    for s in started {
        if let Started::Run(lease, record) = s {
            ran.push(record.id.clone());
            done.push((lease, handler(&record)));
        }
    }
    // A result must not be lost to a passing outage: keep trying until Redis takes it.
    while !done.is_empty() {
        match consumer.complete(&done).await {
            Ok(_) => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    ran
}

pub(crate) fn succeed(record: &JobRecord) -> Outcome {
    Outcome::Succeeded {
        outputs: vec![output(&record.id)],
        placeholder: Some("LKO2?U%2Tw=w".into()),
        media: None,
    }
}

pub(crate) async fn status(queue: &Queue, id: &str) -> JobStatus {
    queue.get(id).await.unwrap().expect("job exists").status
}

#[tokio::test]
async fn a_job_goes_queued_running_succeeded_with_ttl_and_events() {
    let queue = queue("lifecycle").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let job = new_job(Priority::Normal, Some("k1"));

    // Subscribe first, so no event is missed.
    let client = redis::Client::open(crate::common::node_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(queue.keys().job_channel(&job.id))
        .await
        .unwrap();

    assert!(queue.enqueue(&job).await.unwrap());
    assert!(
        !queue.enqueue(&job).await.unwrap(),
        "an existing job is never overwritten"
    );
    let queued = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (queued.status, queued.attempts, queued.progress),
        (JobStatus::Queued, 0, 0)
    );
    assert_eq!(queued.spec, job.spec);
    assert_eq!(queued.input, job.input);
    assert_eq!(queued.owner.as_deref(), Some("k1"));
    assert_eq!(queued.request_id.as_deref(), Some("req-1"));
    assert!(queued.created_at > 0 && queued.started_at.is_none());
    let ttl: i64 = redis_query(redis::cmd("PTTL").arg(queue.keys().job(&job.id))).await;
    let week = 7 * 24 * 3600 * 1000;
    assert!(ttl > week - 60_000 && ttl <= week, "ttl {ttl}");
    assert_eq!(queue.depth().await.unwrap().waiting, [0, 1, 0]);

    let deliveries = consumer.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let mut started = consumer.start(&deliveries).await.unwrap();
    let Started::Run(lease, record) = started.remove(0) else {
        panic!("should run")
    };
    assert_eq!(
        (record.status, record.attempts, lease.attempt),
        (JobStatus::Running, 1, 1)
    );
    assert!(record.started_at.is_some());
    assert_eq!(queue.depth().await.unwrap().in_flight, [0, 1, 0]);
    consumer.progress(&lease, 50).await.unwrap();
    assert_eq!(queue.get(&job.id).await.unwrap().unwrap().progress, 50);

    let written = consumer
        .complete(&[(lease, succeed(&record))])
        .await
        .unwrap();
    assert_eq!(written, [Completed::Written]);
    let done = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.progress, done.attempts),
        (JobStatus::Succeeded, 100, 1)
    );
    assert_eq!(done.outputs, vec![output(&job.id)]);
    assert_eq!(done.placeholder.as_deref(), Some("LKO2?U%2Tw=w"));
    assert!(done.finished_at >= done.started_at && done.error.is_none());
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.waiting, depth.in_flight),
        ([0; 3], [0; 3]),
        "acknowledged"
    );
    assert_eq!(queue.trim_acknowledged().await.unwrap(), 1);
    let stream_len: u64 =
        redis_query(redis::cmd("XLEN").arg(queue.keys().stream(Priority::Normal))).await;
    assert_eq!(
        stream_len, 0,
        "acknowledged entries are trimmed, so the stream never grows"
    );

    let mut events = pubsub.on_message();
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let message = tokio::time::timeout(Duration::from_secs(2), events.next())
            .await
            .expect("event")
            .unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
        assert_eq!(event["id"], job.id);
        statuses.push(event["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["queued", "running", "running", "succeeded"]);
    let logged: u64 = redis_query(redis::cmd("XLEN").arg(queue.keys().events())).await;
    assert_eq!(
        logged, 2,
        "queued and succeeded in the global events stream"
    );
    assert_eq!(queue.outcome_totals().await.unwrap().succeeded, 1);
    queue.purge().await.ok();
}

/// A record this worker cannot read (its input names a format from a newer release) is skipped,
/// not fatal: the rest of the batch runs, and the record is left for a worker that can read it.
#[tokio::test]
async fn an_unreadable_record_is_dropped_and_the_rest_of_its_batch_runs() {
    let queue = queue("unreadable").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let (good, newer) = (
        new_job(Priority::Normal, None),
        new_job(Priority::Normal, None),
    );
    assert!(queue.enqueue(&good).await.unwrap());
    assert!(queue.enqueue(&newer).await.unwrap());
    let input = format!(
        r#"{{"kind":"image","key":"originals/{}","bytes":1,"format":"qoi","width":1,"height":1}}"#,
        newer.id
    );
    let _: i64 = redis_query(
        redis::cmd("HSET")
            .arg(queue.keys().job(&newer.id))
            .arg("input")
            .arg(input),
    )
    .await;
    let deliveries = consumer.fetch(2, Duration::ZERO).await.unwrap();
    assert_eq!(deliveries.len(), 2);
    let started = consumer.start(&deliveries).await.unwrap();
    let ran: Vec<&str> = started
        .iter()
        .filter_map(|s| match s {
            Started::Run(lease, _) => Some(lease.job_id.as_str()),
            Started::Dropped { .. } => None,
        })
        .collect();
    assert_eq!(ran, [good.id.as_str()]);
    assert!(
        started.iter().any(|s| matches!(s,
            Started::Dropped { job_id, reason } if *job_id == newer.id && reason.contains("qoi"))),
        "{started:?}"
    );
}

/// Ids of the jobs a take started, and the leases to complete them with.
fn runs(started: Vec<Started>) -> (Vec<String>, Vec<(pipeline::queue::Lease, Outcome)>) {
    let mut ids = Vec::new();
    let mut done = Vec::new();
    for s in started {
        if let Started::Run(lease, record) = s {
            assert_eq!((record.status, record.attempts), (JobStatus::Running, 1));
            ids.push(record.id.clone());
            done.push((lease, succeed(&record)));
        }
    }
    (ids, done)
}

/// What a worker does in one call: start the deliveries a blocking read brought, then read
/// (feeding jobs of API keys) and start the rest, high priority first; and say when the queue
/// ran dry, so the next take may block at once.
#[tokio::test]
async fn a_take_starts_held_and_new_jobs_in_one_call_and_says_when_the_queue_is_drained() {
    let queue = queue("take").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let taken = consumer.take(&[], HeldFrom::Read, 4).await.unwrap();
    assert!(taken.started.is_empty() && taken.drained, "{taken:?}");

    let jobs: Vec<NewJob> = vec![
        new_job(Priority::Low, None),
        new_job(Priority::High, None),
        new_job(Priority::Normal, Some("key-a")),
        new_job(Priority::Normal, Some("key-a")),
        new_job(Priority::Normal, Some("key-b")),
    ];
    queue.enqueue_many(&jobs).await.unwrap();
    let held = consumer
        .wait_for_new(1, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(
        (1..=3).contains(&held.len()),
        "one per stream at most: {held:?}"
    );
    let taken = consumer
        .take(&held, HeldFrom::Read, 10 - held.len())
        .await
        .unwrap();
    assert!(taken.drained, "asked for more than there was");
    let (ids, done) = runs(taken.started);
    let held_ids: Vec<&String> = held.iter().map(|d| &d.job_id).collect();
    assert_eq!(ids.iter().take(held.len()).collect::<Vec<_>>(), held_ids);
    let all: HashSet<&String> = jobs.iter().map(|j| &j.id).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>(), all, "each job once");
    consumer.complete(&done).await.unwrap();

    // Less room than jobs: not drained; high priority first; the rest on the next take.
    let more: Vec<NewJob> = [Priority::Normal, Priority::High, Priority::Low]
        .into_iter()
        .map(|p| new_job(p, None))
        .collect();
    queue.enqueue_many(&more).await.unwrap();
    let taken = consumer.take(&[], HeldFrom::Read, 2).await.unwrap();
    assert!(!taken.drained);
    let (ids, first) = runs(taken.started);
    assert_eq!(ids, vec![more[1].id.clone(), more[0].id.clone()]);
    let taken = consumer.take(&[], HeldFrom::Read, 2).await.unwrap();
    assert!(taken.drained);
    let (ids, second) = runs(taken.started);
    assert_eq!(ids, vec![more[2].id.clone()]);
    consumer.complete(&[first, second].concat()).await.unwrap();

    // A held delivery of a job that already ended is acknowledged and dropped, never re-run.
    let _: String = redis_query(
        redis::cmd("XADD")
            .arg(queue.keys().stream(Priority::Normal))
            .arg("*")
            .arg("id")
            .arg(&more[0].id),
    )
    .await;
    let held = consumer.wait_for_new(4, Duration::ZERO).await.unwrap();
    let taken = consumer.take(&held, HeldFrom::Read, 0).await.unwrap();
    assert!(
        matches!(taken.started.as_slice(), [Started::Dropped { reason, .. }] if reason == "succeeded"),
        "{taken:?}"
    );
    assert_eq!(status(&queue, &more[0].id).await, JobStatus::Succeeded);
    assert_eq!(queue.depth().await.unwrap().in_flight, [0; 3]);
    queue.purge().await.ok();
}

/// A busy worker records results and takes the next jobs in one round trip: the results are
/// written first, the take starts no more than asked, says when the queue ran dry, and a take
/// that fails (the consumer groups lost) neither hides the recorded results nor stays broken.
#[tokio::test]
async fn completing_jobs_takes_their_replacements_in_the_same_round_trip() {
    let queue = queue("complete-take").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let jobs: Vec<NewJob> = (0..5)
        .map(|i| new_job(Priority::Normal, (i % 2 == 0).then_some("key-a")))
        .collect();
    queue.enqueue_many(&jobs).await.unwrap();
    let taken = consumer.take(&[], HeldFrom::Read, 2).await.unwrap();
    let (first, done) = runs(taken.started);
    assert_eq!(first.len(), 2);

    let (completed, taken) = consumer.complete_and_take(&done, 2).await.unwrap();
    assert_eq!(completed.unwrap(), vec![Completed::Written; 2]);
    let taken = taken.unwrap();
    assert!(!taken.drained, "two of three left were asked for");
    let (second, done) = runs(taken.started);
    assert_eq!(second.len(), 2);
    for id in &first {
        assert_eq!(status(&queue, id).await, JobStatus::Succeeded);
    }
    for id in &second {
        assert_eq!(status(&queue, id).await, JobStatus::Running);
    }

    let (completed, taken) = consumer.complete_and_take(&done, 2).await.unwrap();
    assert_eq!(completed.unwrap(), vec![Completed::Written; 2]);
    let taken = taken.unwrap();
    assert!(taken.drained, "one job left, two asked for");
    let (third, done) = runs(taken.started);
    let all: HashSet<&String> = jobs.iter().map(|j| &j.id).collect();
    let seen: HashSet<&String> = first.iter().chain(&second).chain(&third).collect();
    assert_eq!(seen, all, "each job once");

    // Redis lost the streams and groups: the result is still recorded, the take reads nothing
    // and makes the groups again, so the next job is taken as usual.
    for priority in Priority::ALL {
        let _: i64 = redis_query(redis::cmd("DEL").arg(queue.keys().stream(priority))).await;
    }
    let (completed, taken) = consumer.complete_and_take(&done, 1).await.unwrap();
    assert_eq!(completed.unwrap(), vec![Completed::Written]);
    assert!(taken.unwrap().started.is_empty());
    assert_eq!(status(&queue, &third[0]).await, JobStatus::Succeeded);
    let late = new_job(Priority::Normal, None);
    queue.enqueue(&late).await.unwrap();
    let taken = consumer.take(&[], HeldFrom::Read, 1).await.unwrap();
    assert_eq!(runs(taken.started).0, vec![late.id.clone()]);
    queue.purge().await.ok();
}

/// Concurrent uploads share ENQUEUE calls through one enqueuer: each caller learns about its
/// own job (created, or already there), every job is queued once, and when Redis is gone every
/// caller of the batch gets the error (none is told its job is in).
#[tokio::test]
async fn an_enqueuer_batches_concurrent_jobs_and_answers_each_caller() {
    let queue = queue("enqueuer").await;
    let enqueuer = Enqueuer::spawn(queue.clone());
    let jobs: Vec<NewJob> = (0..40)
        .map(|i| new_job(Priority::Normal, (i % 3 == 0).then_some("key-a")))
        .collect();
    let created = futures::future::join_all(jobs.iter().map(|j| enqueuer.enqueue(j.clone()))).await;
    assert!(created.iter().all(|c| c == &Ok(true)), "{created:?}");
    assert!(
        !enqueuer.enqueue(jobs[7].clone()).await.unwrap(),
        "an existing id is not created again"
    );
    let consumer = consumer(&queue, &redis_url()).await;
    let taken = consumer.take(&[], HeldFrom::Read, 100).await.unwrap();
    let (ids, done) = runs(taken.started);
    assert_eq!(ids.len(), jobs.len(), "each job once: {ids:?}");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        jobs.iter().map(|j| &j.id).collect::<HashSet<_>>()
    );
    consumer.complete(&done).await.unwrap();
    queue.purge().await.ok();

    let mut server = RedisServer::start();
    let queue = queue_at(&server.url(), "enqueuer-down", |c| {
        c.call_timeout = Duration::from_millis(500)
    })
    .await;
    let enqueuer = Enqueuer::spawn(queue);
    server.kill();
    let jobs: Vec<NewJob> = (0..5).map(|_| new_job(Priority::Normal, None)).collect();
    let results = futures::future::join_all(jobs.iter().map(|j| enqueuer.enqueue(j.clone()))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(QueueError::is_unavailable)),
        "{results:?}"
    );
}

/// A worker blocked on the streams when Redis lost its data (a restart without persistence:
/// streams and consumer groups gone) makes the groups again and goes on taking jobs.
#[tokio::test]
async fn a_blocking_read_after_redis_lost_its_groups_makes_them_again() {
    let queue = queue("lost-groups").await;
    let consumer = consumer(&queue, &redis_url()).await;
    for priority in Priority::ALL {
        let _: i64 = redis_query(redis::cmd("DEL").arg(queue.keys().stream(priority))).await;
    }
    let none = consumer
        .wait_for_new(1, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(none.is_empty());
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    let held = consumer
        .wait_for_new(1, Duration::from_millis(200))
        .await
        .unwrap();
    let taken = consumer.take(&held, HeldFrom::Read, 0).await.unwrap();
    let (ids, done) = runs(taken.started);
    assert_eq!(ids, vec![job.id.clone()]);
    consumer.complete(&done).await.unwrap();
    assert_eq!(status(&queue, &job.id).await, JobStatus::Succeeded);
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_late_duplicate_delivery_is_acknowledged_and_dropped() {
    let queue = queue("duplicate").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    assert_eq!(work_once(&consumer, &succeed).await, vec![job.id.clone()]);
    // The same job delivered again (as after a redelivery race).
    let _: String = redis_query(
        redis::cmd("XADD")
            .arg(queue.keys().stream(Priority::Normal))
            .arg("*")
            .arg("id")
            .arg(&job.id),
    )
    .await;
    let deliveries = consumer.fetch(10, Duration::ZERO).await.unwrap();
    let started = consumer.start(&deliveries).await.unwrap();
    assert!(
        matches!(&started[0], Started::Dropped { reason, .. } if reason == "succeeded"),
        "{started:?}"
    );
    let record = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts),
        (JobStatus::Succeeded, 1),
        "never re-run"
    );
    assert_eq!(queue.depth().await.unwrap().in_flight, [0; 3]);
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_poison_job_backs_off_then_dead_letters_and_replays() {
    let queue = queue_at(&redis_url(), "poison", |c| c.max_attempts = 4).await;
    let consumer = consumer(&queue, &redis_url()).await;
    let job = new_job(Priority::High, None);
    queue.enqueue(&job).await.unwrap();
    let transient = |_: &JobRecord| Outcome::Failed {
        error: JobError {
            code: FailureCode::StorageError,
            message: "storage timed out".into(),
        },
        disposition: Disposition::Retry,
    };
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&queue, &job.id).await != JobStatus::Failed {
        assert!(Instant::now() < deadline, "never dead-lettered");
        queue.promote_due().await.unwrap();
        if !work_once(&consumer, &transient).await.is_empty() {
            let record = queue.get(&job.id).await.unwrap().unwrap();
            if let Some(next) = record.next_attempt_at {
                assert_eq!(record.status, JobStatus::Queued, "waiting to retry");
                assert_eq!(
                    record.error.as_ref().unwrap().code,
                    FailureCode::StorageError,
                    "last error kept"
                );
                delays.push(next.saturating_sub(pipeline::job::now_ms()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Retry delays: 50–100 ms, 100–200 ms, 200–400 ms (minus the time to read them back).
    assert_eq!(delays.len(), 3, "{delays:?}");
    assert!(
        delays[0] <= 100 && delays[1] > delays[0] && delays[2] > delays[1],
        "{delays:?}"
    );
    assert!(delays[2] >= 150, "{delays:?}");

    let failed = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.attempts, failed.error.unwrap().code),
        (4, FailureCode::StorageError)
    );
    let (dead, _) = queue.dead_letters(10, None).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.job.id.as_str()).collect::<Vec<_>>(),
        [job.id.as_str()]
    );
    assert_eq!(queue.depth().await.unwrap().dead, 1);

    assert!(queue.replay(&job.id).await.unwrap());
    assert!(!queue.replay(&job.id).await.unwrap(), "no longer dead");
    let replayed = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((replayed.status, replayed.attempts), (JobStatus::Queued, 0));
    assert!(replayed.error.is_none());
    assert!(queue.dead_letters(10, None).await.unwrap().0.is_empty());
    work_once(&consumer, &succeed).await;
    assert_eq!(status(&queue, &job.id).await, JobStatus::Succeeded);
    let totals = queue.outcome_totals().await.unwrap();
    assert_eq!(
        (totals.retried, totals.dead, totals.failed, totals.succeeded),
        (3, 1, 1, 1)
    );
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_bad_input_fails_at_once_without_retry() {
    let queue = queue("abort").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    let bad = |_: &JobRecord| Outcome::Failed {
        error: JobError {
            code: FailureCode::DecodeError,
            message: "cannot decode".into(),
        },
        disposition: Disposition::Abort,
    };
    work_once(&consumer, &bad).await;
    let record = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (JobStatus::Failed, 1));
    assert_eq!(record.error.unwrap().code, FailureCode::DecodeError);
    assert!(
        queue.dead_letters(10, None).await.unwrap().0.is_empty(),
        "not dead-lettered: it never was worth retrying"
    );
    assert_eq!(queue.depth().await.unwrap().delayed, 0);
    queue.purge().await.ok();
}

#[tokio::test]
async fn cancelled_jobs_never_run_or_stop_at_a_checkpoint() {
    let queue = queue("cancel").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let queued = new_job(Priority::Normal, None);
    queue.enqueue(&queued).await.unwrap();
    assert_eq!(
        queue.cancel(&queued.id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        queue.cancel(&queued.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobStatus::Cancelled)
    );
    let started = consumer
        .start(&consumer.fetch(10, Duration::ZERO).await.unwrap())
        .await
        .unwrap();
    assert!(matches!(&started[0], Started::Dropped { reason, .. } if reason == "cancelled"));

    let running = new_job(Priority::Normal, None);
    queue.enqueue(&running).await.unwrap();
    let mut started = consumer
        .start(&consumer.fetch(10, Duration::ZERO).await.unwrap())
        .await
        .unwrap();
    let Started::Run(lease, _) = started.remove(0) else {
        panic!()
    };
    assert_eq!(
        queue.cancel(&running.id).await.unwrap(),
        CancelOutcome::Cancelling
    );
    assert_eq!(
        status(&queue, &running.id).await,
        JobStatus::Running,
        "it stops at its next checkpoint"
    );
    assert_eq!(
        consumer.renew(std::slice::from_ref(&lease)).await.unwrap(),
        [LeaseState::CancelRequested]
    );
    consumer
        .complete(&[(lease, Outcome::Cancelled)])
        .await
        .unwrap();
    assert_eq!(status(&queue, &running.id).await, JobStatus::Cancelled);
    assert_eq!(
        queue.cancel(&new_job_id()).await.unwrap(),
        CancelOutcome::Missing
    );
    queue.purge().await.ok();
}

#[tokio::test]
async fn idempotency_keys_map_to_one_job_per_owner() {
    let queue = queue("idem").await;
    let first = queue
        .claim_idempotency(Some("k1"), "order-42", "job-a", "fp1")
        .await
        .unwrap();
    assert_eq!(first, IdempotencyClaim::New);
    let again = queue
        .claim_idempotency(Some("k1"), "order-42", "job-b", "fp2")
        .await
        .unwrap();
    let IdempotencyClaim::Existing {
        job_id,
        fingerprint,
        claimed_at,
    } = again
    else {
        panic!("{again:?}")
    };
    assert_eq!((job_id.as_str(), fingerprint.as_str()), ("job-a", "fp1"));
    assert!(claimed_at > 0 && claimed_at <= pipeline::job::now_ms());
    let other_owner = queue
        .claim_idempotency(Some("k2"), "order-42", "job-c", "fp1")
        .await
        .unwrap();
    assert_eq!(other_owner, IdempotencyClaim::New);
    queue
        .release_idempotency(Some("k1"), "order-42")
        .await
        .unwrap();
    assert_eq!(
        queue
            .claim_idempotency(Some("k1"), "order-42", "job-d", "fp1")
            .await
            .unwrap(),
        IdempotencyClaim::New
    );
    queue.purge().await.ok();
}

#[tokio::test]
async fn higher_priorities_are_served_first() {
    let queue = queue("priority").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let jobs: Vec<NewJob> = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Low,
        Priority::High,
    ]
    .into_iter()
    .map(|p| new_job(p, None))
    .collect();
    queue.enqueue_many(&jobs).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().waiting, [2, 1, 2]);
    let mut order = Vec::new();
    for _ in 0..5 {
        let d = consumer.fetch(1, Duration::ZERO).await.unwrap();
        order.push(d[0].job_id.clone());
    }
    let expected: Vec<String> = [2, 4, 1, 0, 3]
        .iter()
        .map(|&i| jobs[i].id.clone())
        .collect();
    assert_eq!(order, expected);
    queue.purge().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_job_longer_than_the_visibility_timeout_keeps_its_lease() {
    let queue = queue("lease").await; // visibility timeout: 1 s
    let holder = consumer(&queue, &redis_url()).await;
    let rival = consumer(&queue, &redis_url()).await;
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    let mut started = holder
        .start(&holder.fetch(1, Duration::ZERO).await.unwrap())
        .await
        .unwrap();
    let Started::Run(lease, record) = started.remove(0) else {
        panic!()
    };

    // The holder renews from its own task while the "CPU work" blocks a thread for 3.5 s.
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (holder, lease, stop) = (holder.clone(), lease.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                assert_eq!(
                    holder.renew(std::slice::from_ref(&lease)).await.unwrap(),
                    [LeaseState::Held]
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let work = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(3500)));
    let mut stolen = Vec::new();
    while !work.is_finished() {
        stolen.extend(rival.reclaim(10).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    renewer.await.unwrap();
    assert!(
        stolen.is_empty(),
        "taken over while its worker was alive: {stolen:?}"
    );
    holder.complete(&[(lease, succeed(&record))]).await.unwrap();
    let done = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    queue.purge().await.ok();
}

/// Entry point of the child process in the SIGKILL test: starts one job and "works" on it
/// forever, renewing its lease, until killed.
#[tokio::test]
#[ignore = "run as a child process by a_killed_worker_s_job_is_taken_over_and_succeeds_once"]
async fn child_worker_that_gets_killed() {
    let (Ok(name), Ok(url)) = (
        std::env::var("IMAGEPIPE_CHILD_QUEUE"),
        std::env::var("IMAGEPIPE_CHILD_REDIS"),
    ) else {
        return;
    };
    let queue = Queue::connect(&url, config(&name)).await.unwrap();
    let consumer = consumer(&queue, &url).await;
    loop {
        let deliveries = consumer.fetch(1, Duration::from_millis(500)).await.unwrap();
        if let Some(Started::Run(lease, record)) = consumer.start(&deliveries).await.unwrap().pop()
        {
            println!("started {}", record.id);
            loop {
                consumer.renew(std::slice::from_ref(&lease)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_taken_over_and_succeeds_once() {
    let queue = queue("sigkill").await;
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "queue::child_worker_that_gets_killed",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("IMAGEPIPE_CHILD_QUEUE", &queue.config().name)
        .env("IMAGEPIPE_CHILD_REDIS", redis_url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let read_started = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The test harness prints "test NAME ... " on the same line first.
            .find_map(|line| {
                line.split_once("started ")
                    .map(|(_, id)| id.trim().to_owned())
            })
    });
    let started = tokio::time::timeout(Duration::from_secs(30), read_started).await;
    if started.is_err() {
        let _ = child.kill();
    }
    let started = started.expect("the child started the job").unwrap();
    assert_eq!(started.as_deref(), Some(job.id.as_str()));
    assert_eq!(status(&queue, &job.id).await, JobStatus::Running);
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap(); // SIGKILL mid-job
    child.wait().unwrap();

    let rescuer = consumer(&queue, &redis_url()).await;
    let killed_at = Instant::now();
    let mut ran = Vec::new();
    while ran.is_empty() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "never taken over"
        );
        ran = work_once(&rescuer, &succeed).await;
    }
    assert!(
        killed_at.elapsed() >= Duration::from_millis(500),
        "not before the visibility timeout"
    );
    assert_eq!(ran, vec![job.id.clone()]);
    let done = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 2));
    assert_eq!(
        queue.outcome_totals().await.unwrap().succeeded,
        1,
        "succeeded once"
    );
    queue.purge().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_job_is_lost_when_redis_is_killed_and_restarted_with_aof() {
    let mut server = RedisServer::start();
    let url = server.url();
    let queue = queue_at(&url, "restart", |c| {
        c.call_timeout = Duration::from_millis(500)
    })
    .await;
    assert!(
        queue.check_server().await.is_empty(),
        "AOF + noeviction: nothing to warn about"
    );

    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (queue, accepted, stop) = (queue.clone(), accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut refused = 0;
            while !stop.load(Ordering::SeqCst) {
                let job = new_job(Priority::Normal, None);
                match queue.enqueue(&job).await {
                    Ok(true) => accepted.lock().unwrap().push(job.id),
                    Ok(false) => unreachable!("fresh ids"),
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            refused
        })
    };
    let mut workers = Vec::new();
    for _ in 0..2 {
        let consumer = consumer(&queue, &url).await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let slow = |record: &JobRecord| {
                    std::thread::sleep(Duration::from_millis(3));
                    succeed(record)
                };
                if work_once(&consumer, &slow).await.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Enough accepted before the fault to mean something, however busy the machine is (a fixed
    // wait saw only 12 while video tests shared the cores).
    let warmup = Instant::now() + Duration::from_secs(30);
    while accepted.lock().unwrap().len() <= 60 && Instant::now() < warmup {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let down = queue.ping().await;
    assert!(
        down.as_ref().is_err_and(QueueError::is_unavailable),
        "{down:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let refused = producer.await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }

    // Drain what is left (including jobs held when Redis died: taken over after the visibility
    // timeout) and check every accepted job succeeded.
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() > 50, "only {} accepted", accepted.len());
    assert!(refused > 0, "the producer saw the outage");
    let rescuer = consumer(&queue, &url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut remaining: HashSet<String> = accepted.iter().cloned().collect();
    while !remaining.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted jobs never finished",
            remaining.len(),
            accepted.len()
        );
        work_once(&rescuer, &succeed).await;
        let mut finished = Vec::new();
        for id in &remaining {
            let record = queue
                .get(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("accepted job {id} lost"));
            if record.status == JobStatus::Succeeded {
                finished.push(id.clone());
            }
        }
        for id in finished {
            remaining.remove(&id);
        }
    }
    drop(server);
}

#[tokio::test]
async fn jobs_list_newest_first_per_owner_with_paging_and_status() {
    let queue = queue("list").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let mine: Vec<NewJob> = (0..5)
        .map(|_| new_job(Priority::Normal, Some("k1")))
        .collect();
    for job in &mine {
        queue.enqueue(job).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    queue
        .enqueue(&new_job(Priority::Normal, Some("k2")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = queue
            .list(Some("k1"), None, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let newest_first: Vec<String> = mine.iter().rev().map(|j| j.id.clone()).collect();
    assert_eq!(seen, newest_first);
    assert_eq!(
        queue.list(None, None, 100, None).await.unwrap().jobs.len(),
        6,
        "all owners"
    );

    work_once(&consumer, &succeed).await; // runs all six
    queue
        .enqueue(&new_job(Priority::Normal, Some("k1")))
        .await
        .unwrap();
    let succeeded = queue
        .list(Some("k1"), Some(JobStatus::Succeeded), 100, None)
        .await
        .unwrap();
    assert_eq!(succeeded.jobs.len(), 5);
    let queued = queue
        .list(Some("k1"), Some(JobStatus::Queued), 100, None)
        .await
        .unwrap();
    assert_eq!(queued.jobs.len(), 1);
    queue.purge().await.ok();
}

#[tokio::test]
async fn workers_register_by_heartbeat() {
    let queue = queue("registry").await;
    let info = WorkerInfo {
        id: uuid::Uuid::new_v4().to_string(),
        host: "host-a".into(),
        pid: 42,
        threads: 2,
        jobs_in_hand: 1,
        started_at: pipeline::job::now_ms(),
        version: "test".into(),
        last_seen: 0,
    };
    queue
        .heartbeat(&info, Duration::from_secs(10))
        .await
        .unwrap();
    let workers = queue.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(
        (workers[0].host.as_str(), workers[0].jobs_in_hand),
        ("host-a", 1)
    );
    assert!(workers[0].last_seen > 0);
    queue.deregister(&info.id).await.unwrap();
    assert!(queue.workers().await.unwrap().is_empty());
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_redis_without_persistence_is_warned_about() {
    let server = RedisServer::start();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let queue = queue_at(&server.url(), "checks", |_| {}).await;
    let warnings = queue.check_server().await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("maxmemory-policy is allkeys-lru")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("no persistence")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_with_a_clear_error() {
    let started = Instant::now();
    let port = crate::common::free_port();
    let result = Queue::connect(&format!("redis://127.0.0.1:{port}/0"), config("nowhere")).await;
    let e = result.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let bad = Queue::connect("mysql://localhost", config("bad"))
        .await
        .unwrap_err();
    assert!(matches!(bad, QueueError::BadUrl(_)), "{bad}");
}

#[tokio::test]
async fn trimming_never_drops_an_unacknowledged_or_undelivered_entry() {
    let queue = queue("trim").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let jobs: Vec<NewJob> = (0..4).map(|_| new_job(Priority::Normal, None)).collect();
    queue.enqueue_many(&jobs).await.unwrap();
    let deliveries = consumer.fetch(2, Duration::ZERO).await.unwrap();
    let mut started = consumer.start(&deliveries).await.unwrap();
    let Started::Run(first, record) = started.remove(0) else {
        panic!()
    };
    consumer
        .complete(&[(first, succeed(&record))])
        .await
        .unwrap();
    // Entry 1 acknowledged, entry 2 pending, entries 3 and 4 not yet delivered.
    assert_eq!(queue.trim_acknowledged().await.unwrap(), 1);
    assert_eq!(queue.trim_acknowledged().await.unwrap(), 0);
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.waiting[1], depth.in_flight[1]), (2, 1));
    let rest = consumer.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        rest.iter().map(|d| d.job_id.clone()).collect::<Vec<_>>(),
        [jobs[2].id.clone(), jobs[3].id.clone()]
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the visibility timeout
    let reclaimed = consumer.reclaim(10).await.unwrap();
    assert!(
        reclaimed.iter().any(|d| d.job_id == jobs[1].id),
        "the pending entry survived trimming"
    );
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_handed_back_job_is_taken_over_at_once_without_using_an_attempt() {
    let queue = queue_at(&redis_url(), "handback", |c| {
        c.visibility_timeout = Duration::from_secs(30)
    })
    .await;
    let leaving = consumer(&queue, &redis_url()).await;
    let staying = consumer(&queue, &redis_url()).await;
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    let mut started = leaving
        .start(&leaving.fetch(1, Duration::ZERO).await.unwrap())
        .await
        .unwrap();
    let Started::Run(lease, _) = started.remove(0) else {
        panic!()
    };
    assert_eq!(
        leaving
            .hand_back(std::slice::from_ref(&lease))
            .await
            .unwrap(),
        1
    );
    let back = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((back.status, back.attempts), (JobStatus::Queued, 0));
    // No 30 s wait: the other worker takes it over immediately.
    let ran = work_once(&staying, &succeed).await;
    assert_eq!(ran, vec![job.id.clone()]);
    let done = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_workers_is_failed_and_dead_lettered_not_looped() {
    let queue = queue_at(&redis_url(), "killer", |c| c.max_attempts = 2).await;
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    // Two workers in turn take the job and die with it (they never renew, never complete).
    for attempt in 1..=2 {
        let doomed = consumer(&queue, &redis_url()).await;
        let mut deliveries = doomed.fetch(1, Duration::ZERO).await.unwrap();
        if deliveries.is_empty() {
            tokio::time::sleep(Duration::from_millis(1200)).await; // past the visibility timeout
            deliveries = doomed.reclaim(1).await.unwrap();
        }
        let started = doomed.start(&deliveries).await.unwrap();
        assert!(
            matches!(&started[..], [Started::Run(lease, _)] if lease.attempt == attempt),
            "attempt {attempt}: {started:?}"
        );
    }
    // The next worker to take it over does not run it a third time.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let survivor = consumer(&queue, &redis_url()).await;
    let deliveries = survivor.reclaim(1).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let started = survivor.start(&deliveries).await.unwrap();
    assert!(
        matches!(&started[..], [Started::Dropped { reason, .. }] if reason == "exhausted"),
        "{started:?}"
    );
    let record = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    let error = record.error.unwrap();
    assert_eq!(error.code, FailureCode::Internal);
    assert!(
        error.message.contains("stopped its worker 2 times"),
        "{}",
        error.message
    );
    let (dead, _) = queue.dead_letters(10, None).await.unwrap();
    assert_eq!(dead.len(), 1, "dead-lettered");
    assert_eq!(dead[0].job.id, job.id);
    // Nothing left to deliver: it is not fed to anyone again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(survivor.reclaim(1).await.unwrap().is_empty());
    assert!(survivor.fetch(1, Duration::ZERO).await.unwrap().is_empty());
    queue.purge().await.ok();
}

/// API.md, "Fencing": a worker that stalled past its visibility timeout and comes back after
/// another worker took its job over can change nothing of the job — not its progress, not its
/// end, not the new holder's stream entry.
#[tokio::test]
async fn a_worker_that_lost_its_lease_is_fenced_off() {
    let queue = queue("fencing").await;
    let (stalled, rival) = (
        consumer(&queue, &redis_url()).await,
        consumer(&queue, &redis_url()).await,
    );
    let job = new_job(Priority::Normal, None);
    queue.enqueue(&job).await.unwrap();
    let deliveries = stalled.fetch(1, Duration::ZERO).await.unwrap();
    let Some(Started::Run(old, record)) = stalled.start(&deliveries).await.unwrap().pop() else {
        panic!("not started")
    };
    // The stalled worker renews nothing; past the visibility timeout the rival takes over.
    tokio::time::sleep(queue.config().visibility_timeout + Duration::from_millis(200)).await;
    let taken = rival.reclaim(10).await.unwrap();
    let Some(Started::Run(new, _)) = rival.start(&taken).await.unwrap().pop() else {
        panic!("not taken over: {taken:?}")
    };
    assert!(new.token > old.token, "{} then {}", old.token, new.token);
    assert!(rival.progress(&new, 30).await.unwrap());

    // The stalled worker comes back: everything it tries is refused.
    assert_eq!(
        stalled.renew(std::slice::from_ref(&old)).await.unwrap(),
        [LeaseState::Lost]
    );
    assert!(!stalled.progress(&old, 90).await.unwrap());
    assert_eq!(
        stalled.hand_back(std::slice::from_ref(&old)).await.unwrap(),
        0
    );
    assert_eq!(
        stalled.complete(&[(old, succeed(&record))]).await.unwrap(),
        [Completed::Fenced]
    );
    let running = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (running.status, running.progress, running.attempts),
        (JobStatus::Running, 30, 2),
        "the new holder's state stands"
    );
    assert_eq!(
        queue.depth().await.unwrap().in_flight[1],
        1,
        "still the rival's"
    );
    assert_eq!(
        rival.renew(std::slice::from_ref(&new)).await.unwrap(),
        [LeaseState::Held]
    );
    let failed = Outcome::Failed {
        error: JobError {
            code: FailureCode::DecodeError,
            message: "the rival's own end".into(),
        },
        disposition: Disposition::Abort,
    };
    assert_eq!(
        rival.complete(&[(new, failed)]).await.unwrap(),
        [Completed::Written]
    );
    let done = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Failed, 2));
    assert!(done.outputs.is_empty(), "the fenced end linked nothing");
    assert_eq!(queue.depth().await.unwrap().in_flight, [0; 3]);
    queue.purge().await.ok();
}
