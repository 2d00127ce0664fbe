//! Tenants against a real Redis: fair scheduling across API keys within a priority, and each
//! key's quota and rate.

use std::collections::HashSet;
use std::time::Duration;

use pipeline::job::{JobStatus, NewJob};
use pipeline::queue::{Admission, CancelOutcome, Consumer, HeldFrom, Started, TenantLimits};
use pipeline::spec::Priority;

use crate::common::redis_url;
use crate::queue::{consumer, new_job, queue, status, succeed};

/// Takes one job, runs it (succeeding) and returns its id; `None` when nothing is waiting.
async fn run_one(consumer: &Consumer) -> Option<String> {
    let deliveries = consumer.fetch(1, Duration::ZERO).await.unwrap();
    let mut ran = None;
    for started in consumer.start(&deliveries).await.unwrap() {
        if let Started::Run(lease, record) = started {
            consumer
                .complete(&[(lease, succeed(&record))])
                .await
                .unwrap();
            ran = Some(record.id);
        }
    }
    if deliveries.is_empty() {
        None
    } else {
        Some(ran.unwrap_or_default())
    }
}

fn jobs_of(owner: &str, n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|_| new_job(Priority::Normal, Some(owner)))
        .collect()
}

#[tokio::test]
async fn one_key_s_backlog_does_not_hold_back_another_key() {
    let queue = queue("fair").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let a = jobs_of("key-a", 2000);
    for batch in a.chunks(100) {
        queue.enqueue_many(batch).await.unwrap();
    }
    let b = jobs_of("key-b", 20);
    queue.enqueue_many(&b).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().waiting, [0, 2020, 0]);
    let busiest = queue.busiest_tenants(10).await.unwrap();
    assert_eq!(
        busiest
            .iter()
            .map(|t| (t.key_id.as_str(), t.unfinished))
            .collect::<Vec<_>>(),
        [("key-a", 2000), ("key-b", 20)]
    );

    let b_ids: HashSet<&str> = b.iter().map(|j| j.id.as_str()).collect();
    let (mut a_done, mut b_done, mut a_done_when_b_finished) = (0, 0, None);
    let mut ran = HashSet::new();
    while let Some(id) = run_one(&consumer).await {
        assert!(ran.insert(id.clone()), "{id} ran twice");
        if b_ids.contains(id.as_str()) {
            b_done += 1;
            if b_done == b.len() {
                a_done_when_b_finished = Some(a_done);
            }
        } else {
            a_done += 1;
        }
    }
    let a_done_first = a_done_when_b_finished.expect("all of B's jobs ran");
    println!("FAIR key B's 20 jobs done while key A finished {a_done_first} of its 2000");
    assert!(
        a_done_first < 200,
        "A finished {a_done_first} before B's 20"
    );
    assert_eq!((a_done, b_done), (2000, 20));
    assert_eq!(queue.depth().await.unwrap().waiting, [0, 0, 0]);
    assert!(queue.busiest_tenants(10).await.unwrap().is_empty());
    queue.purge().await.ok();
}

#[tokio::test]
async fn keys_take_turns_within_a_priority_and_priorities_still_come_first() {
    let queue = queue("fair-priority").await;
    let consumer = consumer(&queue, &redis_url()).await;
    // Fed ahead at enqueue (the wake-up window) come first; the rest alternate by key.
    let window = pipeline::queue::FAIR_WINDOW as usize;
    let a = jobs_of("a", window + 3);
    let b = jobs_of("b", 3);
    queue.enqueue_many(&a).await.unwrap();
    queue.enqueue_many(&b).await.unwrap();
    let urgent = new_job(Priority::High, Some("c"));
    queue.enqueue(&urgent).await.unwrap();
    let mut order = Vec::new();
    while let Some(id) = run_one(&consumer).await {
        order.push(id);
    }
    let owner = |id: &String| {
        if *id == urgent.id {
            "c"
        } else if a.iter().any(|j| j.id == *id) {
            "a"
        } else {
            "b"
        }
    };
    let owners: Vec<&str> = order.iter().map(owner).collect();
    let mut expected = vec!["c"];
    expected.extend(std::iter::repeat_n("a", window));
    // Key a was in the ring first, so its turn comes first.
    expected.extend(["a", "b", "a", "b", "a", "b"]);
    assert_eq!(owners, expected);
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_cancelled_waiting_job_frees_its_key_s_quota_and_never_runs() {
    let queue = queue("fair-cancel").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let limits = TenantLimits {
        max_unfinished: 2,
        rate_per_second: None,
    };
    let jobs = jobs_of("k", 6);
    queue.enqueue_many(&jobs).await.unwrap();
    assert!(matches!(
        queue.admit_tenant("k", limits).await.unwrap(),
        Admission::OverQuota { .. }
    ));
    assert_eq!(
        queue.admit_tenant("other", limits).await.unwrap(),
        Admission::Admitted
    );
    // The last job waits in its key's list (past the fed-ahead window): cancelled there.
    let last = &jobs[5].id;
    assert_eq!(queue.cancel(last).await.unwrap(), CancelOutcome::Cancelled);
    let mut ran = Vec::new();
    while let Some(id) = run_one(&consumer).await {
        ran.push(id);
    }
    assert_eq!(ran.iter().filter(|id| !id.is_empty()).count(), 5);
    assert!(!ran.contains(last));
    assert_eq!(status(&queue, last).await, JobStatus::Cancelled);
    assert_eq!(
        queue.admit_tenant("k", limits).await.unwrap(),
        Admission::Admitted
    );
    assert!(queue.busiest_tenants(10).await.unwrap().is_empty());
    queue.purge().await.ok();
}

#[tokio::test]
async fn a_key_over_its_rate_waits_while_others_go_on() {
    let queue = queue("rate").await;
    let limits = TenantLimits {
        max_unfinished: 0,
        rate_per_second: Some(2.0),
    };
    for _ in 0..2 {
        assert_eq!(
            queue.admit_tenant("fast", limits).await.unwrap(),
            Admission::Admitted
        );
    }
    let Admission::OverRate { retry_after } = queue.admit_tenant("fast", limits).await.unwrap()
    else {
        panic!("a third upload within the second is over 2/s")
    };
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500));
    assert_eq!(
        queue.admit_tenant("slow", limits).await.unwrap(),
        Admission::Admitted
    );
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(
        queue.admit_tenant("fast", limits).await.unwrap(),
        Admission::Admitted
    );
    queue.purge().await.ok();
}

/// A worker woken by a blocking read of fed jobs, and with no room to read more, still counts
/// them off what was fed ahead: enqueue goes on feeding, so another key's new job reaches the
/// streams (and wakes other blocked workers) at once.
#[tokio::test]
async fn jobs_a_blocking_read_took_are_counted_off_what_was_fed_ahead() {
    let queue = queue("fair-held").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let taken = consumer.take(&[], HeldFrom::Read, 1).await.unwrap();
    assert!(taken.drained, "empty at first");
    let window = pipeline::queue::FAIR_WINDOW as usize;
    queue.enqueue_many(&jobs_of("a", window + 6)).await.unwrap();
    let held = consumer
        .wait_for_new(window, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(held.len(), window, "enqueue fed its window ahead");
    let taken = consumer.take(&held, HeldFrom::Read, 0).await.unwrap();
    assert_eq!(taken.started.len(), window);
    let late = jobs_of("b", 1);
    queue.enqueue_many(&late).await.unwrap();
    let next = consumer
        .wait_for_new(window, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(
        next.iter().any(|d| d.job_id == late[0].id),
        "key b's job was fed: {next:?}"
    );
    queue.purge().await.ok();
}

/// The quota counts of many keys move together, one batch at a time (enqueue and complete
/// count a batch's keys in a few commands): exact per key, and gone once a key has nothing left.
#[tokio::test]
async fn quota_counts_of_many_keys_in_one_batch_stay_exact() {
    let queue = queue("quota-batch").await;
    let consumer = consumer(&queue, &redis_url()).await;
    let owners = ["key-a", "key-b", "key-a", "key-c", "key-a", "key-c"];
    let jobs: Vec<NewJob> = owners
        .iter()
        .map(|o| new_job(Priority::Normal, Some(o)))
        .collect();
    queue.enqueue_many(&jobs).await.unwrap();
    let load = |queue: pipeline::queue::Queue| async move {
        let mut load: Vec<(String, u64)> = queue
            .busiest_tenants(10)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.key_id, t.unfinished))
            .collect();
        load.sort();
        load
    };
    let counts = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    };
    assert_eq!(
        load(queue.clone()).await,
        counts(&[("key-a", 3), ("key-b", 1), ("key-c", 2)])
    );

    let taken = consumer.take(&[], HeldFrom::Read, 10).await.unwrap();
    let mut done: Vec<_> = taken
        .started
        .into_iter()
        .filter_map(|s| match s {
            Started::Run(lease, record) => Some((lease, succeed(&record), record.owner)),
            Started::Dropped { .. } => None,
        })
        .collect();
    assert_eq!(done.len(), jobs.len());
    // One batch ends two of A's, B's only one and one of C's.
    done.sort_by_key(|(_, _, owner)| owner.clone());
    let (first, rest): (Vec<_>, Vec<_>) = done
        .into_iter()
        .enumerate()
        .partition(|(i, _)| [0, 1, 3, 4].contains(i));
    let ends = |part: Vec<(usize, _)>| -> Vec<_> {
        part.into_iter()
            .map(|(_, (lease, outcome, _))| (lease, outcome))
            .collect()
    };
    consumer.complete(&ends(first)).await.unwrap();
    assert_eq!(
        load(queue.clone()).await,
        counts(&[("key-a", 1), ("key-c", 1)])
    );
    consumer.complete(&ends(rest)).await.unwrap();
    assert!(load(queue.clone()).await.is_empty());
    queue.purge().await.ok();
}
