//! The queue on replicated Redis deployments made here on loopback: a Sentinel-managed primary
//! (found, followed through a failover, events resuming), `WAIT` refusing what replicas do not
//! hold, and the whole queue suite run again against a real Redis Cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fixtures::topologies::{ClusterDeployment, SentinelDeployment};
use pipeline::queue::{follow_job_events, Queue, QueueConfig, QueueError};
use pipeline::shutdown::Shutdown;
use pipeline::spec::Priority;

use crate::common::{redis_url, unique_queue};
use crate::queue::new_job;

fn config(test: &str, wait_replicas: u32) -> QueueConfig {
    QueueConfig {
        name: unique_queue(test),
        call_timeout: Duration::from_secs(2),
        wait_replicas,
        wait_timeout: Duration::from_millis(500),
        ..QueueConfig::default()
    }
}

/// Enqueues a job, retrying while the deployment fails over; returns its id and how long it
/// took to get one in.
async fn enqueue_until_accepted(queue: &Queue, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    loop {
        let job = new_job(Priority::Normal, None);
        match queue.enqueue(&job).await {
            Ok(true) => return (job.id, started.elapsed()),
            Ok(false) => unreachable!("fresh ids"),
            Err(e) => assert!(
                e.is_unavailable() && started.elapsed() < limit,
                "not back after {:?}: {e}",
                started.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_managed_primary_is_found_and_followed_through_a_failover() {
    let deployment = SentinelDeployment::start(2);
    let queue = Queue::connect(&deployment.url(), config("sentinel", 1))
        .await
        .expect("the primary found through the sentinels");
    let (before, _) = enqueue_until_accepted(&queue, Duration::from_secs(5)).await;

    // Events of jobs, heard through the same URL.
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, shutdown) = Shutdown::new();
    let follower = {
        let (queue, heard, url) = (queue.clone(), heard.clone(), deployment.url());
        tokio::spawn(async move {
            let on_event = move |id: &str, _: String| {
                heard.lock().unwrap().push(id.to_owned());
                true
            };
            follow_job_events(&queue, &url, on_event, shutdown).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let old = deployment.primary_port().unwrap();
    deployment.failover();
    let new = deployment
        .wait_new_primary(old, Duration::from_secs(15))
        .expect("a replica promoted");
    let (after, took) = enqueue_until_accepted(&queue, Duration::from_secs(15)).await;
    println!("sentinel failover {old} -> {new}: enqueues back after {took:?}");
    for id in [&before, &after] {
        assert!(queue.get(id).await.unwrap().is_some(), "job {id} is kept");
    }
    // The subscription follows the new primary: a job queued now is heard.
    let started = Instant::now();
    loop {
        let (id, _) = enqueue_until_accepted(&queue, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if heard.lock().unwrap().contains(&id) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no event heard after the failover"
        );
    }
    stop.trigger();
    follower.await.unwrap();
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_sentinel_url_that_names_no_known_master_fails_clearly() {
    let deployment = SentinelDeployment::start(0);
    let url = deployment.url().replace("/imagepipe", "/nosuchmaster");
    let error = Queue::connect(&url, config("nomaster", 0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nosuchmaster"), "{error}");
    for bad in ["redis+sentinel://127.0.0.1:1", "redis+sentinel:///m"] {
        let error = Queue::connect(bad, config("bad", 0)).await.unwrap_err();
        assert!(matches!(error, QueueError::BadUrl(_)), "{bad}: {error}");
    }
}

/// `WAIT` for more replicas than the server has: the enqueue is refused once the wait timeout
/// passes (the gateway answers 503), not accepted on the primary's word.
#[tokio::test]
async fn an_enqueue_the_replicas_do_not_confirm_is_refused() {
    let queue = Queue::connect(&redis_url(), config("wait", 1))
        .await
        .unwrap();
    let started = Instant::now();
    let error = queue
        .enqueue(&new_job(Priority::Normal, None))
        .await
        .unwrap_err();
    assert_no_replica_confirmed(&error);
    assert!(error.is_unavailable());
    assert!(started.elapsed() >= Duration::from_millis(450));
    queue.purge().await.ok();
}

/// The error of a write that one replica was asked to confirm and none did.
fn assert_no_replica_confirmed(error: &QueueError) {
    let expected = QueueError::NotReplicated {
        acked: 0,
        wanted: 1,
    };
    assert_eq!(error, &expected, "{error}");
}

/// Every queue and tenant test again, with `IMAGEPIPE_TEST_REDIS_URL` naming a real cluster:
/// every script is proven to keep to one slot.
#[test]
fn the_queue_suite_passes_on_a_redis_cluster() {
    if redis_url().starts_with("redis+cluster://") {
        return; // this is the run on the cluster
    }
    let cluster = ClusterDeployment::start(3, 0);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["queue::", "tenants::", "--test-threads", "2"])
        .env("IMAGEPIPE_TEST_REDIS_URL", cluster.url())
        .output()
        .expect("run the suite");
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report
        .lines()
        .rfind(|l| l.starts_with("test result:"))
        .unwrap_or("no summary");
    println!("queue suite on a cluster: {summary}");
    assert!(
        output.status.success() && summary.contains(" 0 failed"),
        "the queue suite failed on a cluster:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `rediss+sentinel://` and `rediss+cluster://`: every node (and sentinel, and the cluster bus)
/// speaks only TLS and asks for a client certificate; a job goes through each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_cluster_work_over_tls() {
    let sentinel = SentinelDeployment::start_tls(1);
    let files = sentinel.tls.clone().expect("tls");
    job_goes_through(&sentinel.url(), &files).await;
    let cluster = ClusterDeployment::start_tls(3, 0);
    let files = cluster.tls.clone().expect("tls");
    job_goes_through(&cluster.url(), &files).await;
}

async fn job_goes_through(url: &str, files: &fixtures::servers::TlsFiles) {
    let config = QueueConfig {
        tls: pipeline::queue::RedisTls {
            ca: Some(files.file("ca.pem")),
            client_cert: Some(files.file("client.pem")),
            client_key: Some(files.file("client.key")),
        },
        ..config("tls", 0)
    };
    let queue = Queue::connect(url, config)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let job = new_job(Priority::Normal, None);
    assert!(queue.enqueue(&job).await.unwrap());
    let consumer = crate::queue::consumer(&queue, url).await;
    let ran = crate::queue::work_once(&consumer, &crate::queue::succeed).await;
    assert_eq!(ran, std::slice::from_ref(&job.id), "{url}");
    let record = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(record.status, pipeline::job::JobStatus::Succeeded, "{url}");
    queue.purge().await.ok();
}

/// A job's end counts only once a replica holds it: without one the worker's end is refused
/// (it retries), and the retry after a replica caught up succeeds — the end was kept, not
/// written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_s_end_waits_for_a_replica_and_a_retry_completes_it() {
    let primary = crate::common::RedisServer::start();
    let queue = Queue::connect(&primary.url(), config("end-wait", 1))
        .await
        .unwrap();
    let job = new_job(Priority::Normal, None);
    let refused = queue.enqueue(&job).await.unwrap_err();
    assert!(
        matches!(refused, QueueError::NotReplicated { .. }),
        "{refused}"
    );
    let consumer = crate::queue::consumer(&queue, &primary.url()).await;
    let deliveries = consumer.fetch(1, Duration::ZERO).await.unwrap();
    let Some(pipeline::queue::Started::Run(lease, record)) =
        consumer.start(&deliveries).await.unwrap().pop()
    else {
        panic!("the job was written on the primary: {deliveries:?}")
    };
    let done = [(lease, crate::queue::succeed(&record))];
    let error = consumer.complete(&done).await.unwrap_err();
    assert_no_replica_confirmed(&error);

    let _replica = fixtures::topologies::replica_of(primary.port);
    let retried = consumer.complete(&done).await.unwrap();
    assert_eq!(
        retried,
        [pipeline::queue::Completed::Stale],
        "kept from the first call"
    );
    let record = queue.get(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts),
        (pipeline::job::JobStatus::Succeeded, 1)
    );
}
