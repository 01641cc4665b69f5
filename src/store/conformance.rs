//! The behaviours every [`Store`] must show, written once over `&dyn Store`: each backend's test
//! module runs them all through [`store_conformance!`], and keeps next to it only what is its
//! own (SQLite's counter and file, DynamoDB's sparse index, codec and cache).
#![cfg(test)]

use std::time::Duration;

use chrono::Utc;

use super::{
    ArchiveBatch, CONTROLLER_LEASE, Change, DecisionOutcome, Fence, LabelSelector, LeaseClaim, Store, StoreError,
    notified_marker,
};
use crate::spec::{
    API_VERSION, CANCEL_FINALIZER, CatalogRef, Decision, DecisionKind, HistoryEntry, KIND, Object, ObjectKey,
    ObjectKind, ObjectMeta, ObjectStatus, Phase, Policy, QueryRequest, QueryRequestSpec, QueryRequestStatus,
    STALE_CONDITION,
};

/// Longer than the shortest gap between two change polls a store answers with a call
/// (DynamoDB's `MIN_POLL`; SQLite answers every poll).
#[cfg(feature = "aws")]
const POLL_GAP: Duration = super::dynamodb::MIN_POLL;
#[cfg(not(feature = "aws"))]
const POLL_GAP: Duration = Duration::from_millis(1);

/// Writers racing read-modify-write increments of one counter (request `counter`, created by
/// the caller) through `stores`, `per_writer` increments each, retrying on conflict: every
/// increment lands exactly once. Returns how many conflicts were retried. Run by each backend
/// with the stores its races come from (two processes on one SQLite file; one client on
/// DynamoDB).
pub(crate) async fn racing_writers_lose_no_update(stores: Vec<std::sync::Arc<dyn Store>>, per_writer: u64) -> u64 {
    let writers = stores.len() as u64;
    let reader = stores[0].clone();
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|s| {
            tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..per_writer {
                    loop {
                        let mut r = s.get(&key("counter")).await.unwrap().unwrap();
                        let n: u64 = r.metadata.annotations.get("count").map_or(0, |v| v.parse().unwrap());
                        r.metadata.annotations.insert("count".into(), (n + 1).to_string());
                        match s.update_spec(&r).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. } | StoreError::Unavailable(_)) => conflicts += 1,
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let r = reader.get(&key("counter")).await.unwrap().unwrap();
    assert_eq!(r.metadata.annotations["count"], (writers * per_writer).to_string(), "{conflicts} conflicts");
    conflicts
}

pub(crate) fn request(name: &str, labels: &[(&str, &str)]) -> QueryRequest {
    QueryRequest {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: ObjectMeta {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        },
        spec: QueryRequestSpec {
            question: Some("How many orders were placed in 2024?".into()),
            catalog: CatalogRef { database: "tpch".into(), tables: vec![] },
            ..Default::default()
        },
        status: None,
    }
}

pub(crate) fn status(phase: Phase, observed_generation: u64) -> QueryRequestStatus {
    QueryRequestStatus { phase, observed_generation, ..Default::default() }
}

/// Finished in `phase` at generation 1 and notified for it.
pub(crate) fn notified(phase: Phase) -> QueryRequestStatus {
    QueryRequestStatus { notified: Some(notified_marker(1, phase)), ..status(phase, 1) }
}

pub(crate) fn decision(req: &QueryRequest, id: &str, by: &str) -> Decision {
    Decision {
        id: id.into(),
        namespace: req.metadata.namespace().into(),
        name: req.metadata.name.clone(),
        uid: req.uid().into(),
        generation: req.generation(),
        round: 1,
        sql_digest: "ab".repeat(32),
        decision: DecisionKind::Approve,
        feedback: None,
        comment: None,
        by: by.into(),
        at: Utc::now(),
        source: "cli".into(),
        allow_over_budget: false,
    }
}

pub(crate) fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

/// Creates `default/<name>` and writes `st` as its status.
pub(crate) async fn with_status(s: &dyn Store, name: &str, st: QueryRequestStatus) -> QueryRequest {
    let mut r = s.create(request(name, &[])).await.unwrap();
    r.status = Some(st);
    s.update_status(&r, None).await.unwrap()
}

fn entry(event: &str) -> HistoryEntry {
    HistoryEntry::new(event, 1)
}

pub(crate) async fn create_sets_server_fields_and_refuses_an_existing_key(s: &dyn Store) {
    let mut r = request("top-customers", &[("team", "growth")]);
    // Whatever the caller claims for server-set fields is ignored.
    r.metadata.uid = Some("forged".into());
    r.metadata.generation = Some(7);
    r.metadata.resource_version = Some("99".into());
    r.metadata.finalizers = vec!["x".into()];
    r.status = Some(status(Phase::Done, 7));

    let created = s.create(r.clone()).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert_ne!(created.uid(), "forged");
    assert_eq!(uuid::Uuid::parse_str(created.uid()).unwrap().get_version_num(), 4);
    assert!(created.metadata.resource_version.is_some());
    assert_ne!(created.metadata.resource_version.as_deref(), Some("99"));
    assert_eq!(created.generation(), 1);
    assert!(created.metadata.creation_timestamp.is_some());
    assert!(created.metadata.finalizers.is_empty());
    assert!(created.status.is_none());
    assert_eq!(created.spec, r.spec);

    assert_eq!(s.get(&key("top-customers")).await.unwrap(), Some(created.clone()));
    assert_eq!(s.get(&key("absent")).await.unwrap(), None);
    assert!(matches!(s.create(r).await, Err(StoreError::AlreadyExists(k)) if k == key("top-customers")));
    assert_eq!(s.get(&key("top-customers")).await.unwrap(), Some(created), "the failed create wrote nothing");
}

pub(crate) async fn list_filters_by_namespace_and_labels_in_key_order(s: &dyn Store) {
    for (ns, name, team) in [
        ("default", "b", "growth"),
        ("default", "a", "growth"),
        ("ops", "c", "growth"),
        ("default", "d", "ops"),
        // Sorts after "default/d" by (namespace, name), though "default-2/e" < "default/d" as text.
        ("default-2", "e", "growth"),
    ] {
        let mut r = request(name, &[("team", team), ("env", "prod")]);
        r.metadata.namespace = Some(ns.into());
        s.create(r).await.unwrap();
    }
    let names = |v: Vec<QueryRequest>| v.into_iter().map(|r| r.key().to_string()).collect::<Vec<_>>();
    let all = s.list(None, &LabelSelector::new()).await.unwrap();
    assert_eq!(names(all), ["default/a", "default/b", "default/d", "default-2/e", "ops/c"]);
    let growth: LabelSelector = [("team".to_string(), "growth".to_string())].into();
    assert_eq!(names(s.list(None, &growth).await.unwrap()), ["default/a", "default/b", "default-2/e", "ops/c"]);
    assert_eq!(names(s.list(Some("default"), &growth).await.unwrap()), ["default/a", "default/b"]);
    let both: LabelSelector = [("team".to_string(), "ops".to_string()), ("env".to_string(), "prod".to_string())].into();
    assert_eq!(names(s.list(None, &both).await.unwrap()), ["default/d"]);
    let none: LabelSelector = [("team".to_string(), "nobody".to_string())].into();
    assert!(s.list(None, &none).await.unwrap().is_empty());
    assert!(s.list(Some("absent"), &LabelSelector::new()).await.unwrap().is_empty());
    let counts = s.count_by_phase().await.unwrap();
    assert_eq!(counts[&Phase::Pending], 5);
}

pub(crate) async fn a_stale_resource_version_conflicts_so_only_one_writer_wins(s: &dyn Store) {
    let created = s.create(request("q", &[])).await.unwrap();
    let mut first = created.clone();
    let mut second = created.clone();
    first.metadata.labels.insert("by".into(), "first".into());
    second.metadata.labels.insert("by".into(), "second".into());

    let won = s.update_spec(&first).await.unwrap();
    assert_ne!(won.metadata.resource_version, created.metadata.resource_version);
    match s.update_spec(&second).await {
        Err(StoreError::Conflict { key: k, expected }) => {
            assert_eq!(k, key("q"));
            assert_eq!(Some(expected), created.metadata.resource_version);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut stale_status = created.clone();
    stale_status.status = Some(status(Phase::Generated, 1));
    let e = s.update_status(&stale_status, None).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }) && e.is_transient(), "{e:?}");
    assert_eq!(s.get(&key("q")).await.unwrap().unwrap().metadata.labels["by"], "first");

    let mut no_rv = won.clone();
    no_rv.metadata.resource_version = None;
    assert!(matches!(s.update_spec(&no_rv).await, Err(StoreError::Other(_))));
    let mut missing = won.clone();
    missing.metadata.name = "gone".into();
    assert!(matches!(s.update_spec(&missing).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.update_status(&missing, None).await, Err(StoreError::NotFound(_))));
}

pub(crate) async fn generation_moves_only_when_the_spec_changes(s: &dyn Store) {
    let created = s.create(request("q", &[])).await.unwrap();
    let mut with_status = created.clone();
    with_status.status = Some(status(Phase::Generated, 1));
    let with_status = s.update_status(&with_status, None).await.unwrap();

    let mut relabel = with_status.clone();
    relabel.metadata.labels.insert("team".into(), "growth".into());
    relabel.metadata.annotations.insert("note".into(), "hi".into());
    // Server-set fields and status from the caller are ignored by update_spec.
    relabel.metadata.uid = Some("forged".into());
    relabel.metadata.generation = Some(42);
    relabel.status = None;
    let relabeled = s.update_spec(&relabel).await.unwrap();
    assert_eq!(relabeled.generation(), 1);
    assert_eq!(relabeled.uid(), created.uid());
    assert_eq!(relabeled.metadata.labels["team"], "growth");
    assert_eq!(relabeled.metadata.annotations["note"], "hi");
    assert_eq!(relabeled.status, with_status.status);
    assert_eq!(relabeled.metadata.creation_timestamp, created.metadata.creation_timestamp);

    let mut respec = relabeled.clone();
    respec.spec.question = Some("And in 2023?".into());
    let respecced = s.update_spec(&respec).await.unwrap();
    assert_eq!(respecced.generation(), 2);
    assert_eq!(respecced.spec.question.as_deref(), Some("And in 2023?"));
    assert_eq!(respecced.status, with_status.status);

    // Re-applying the same spec is not a new generation.
    let same = s.update_spec(&respecced).await.unwrap();
    assert_eq!(same.generation(), 2);
    assert_eq!(s.get(&key("q")).await.unwrap(), Some(same));
}

pub(crate) async fn update_status_leaves_spec_and_generation_alone(s: &dyn Store) {
    let created = s.create(request("q", &[("team", "growth")])).await.unwrap();
    // A status write from the stored doc (DynamoDB's fast path) returns what is stored.
    let mut w = created.clone();
    w.status = Some(status(Phase::Generated, 1));
    let with_status = s.update_status(&w, None).await.unwrap();
    assert_eq!(s.get(&key("q")).await.unwrap(), Some(with_status.clone()));

    // Spec, labels and generation smuggled through update_status are ignored (DynamoDB's slow path).
    let mut smuggle = with_status.clone();
    smuggle.status = Some(status(Phase::AwaitingApproval, 1));
    smuggle.metadata.finalizers = vec![CANCEL_FINALIZER.into()];
    smuggle.spec.question = Some("smuggled".into());
    smuggle.metadata.labels.clear();
    smuggle.metadata.generation = Some(5);
    let written = s.update_status(&smuggle, None).await.unwrap();
    assert_eq!(written.phase(), Phase::AwaitingApproval);
    assert_eq!(written.metadata.finalizers, [CANCEL_FINALIZER]);
    assert_eq!(written.spec, created.spec);
    assert_eq!(written.generation(), 1);
    assert_eq!(written.metadata.labels, created.metadata.labels);
    assert_eq!(s.get(&key("q")).await.unwrap(), Some(written));
}

pub(crate) async fn a_fence_without_any_lease_is_refused(s: &dyn Store) {
    let r = s.create(request("q", &[])).await.unwrap();
    let fence = Fence { holder: "a".into(), epoch: 1 };
    assert!(matches!(s.put_policy(&Policy::default(), Some(&fence)).await, Err(StoreError::Fenced { epoch: 0 })));
    assert_eq!(s.get_policy().await.unwrap(), None);
    let mut w = r.clone();
    w.status = Some(status(Phase::Generated, 1));
    assert!(matches!(s.update_status(&w, Some(&fence)).await, Err(StoreError::Fenced { epoch: 0 })));
    assert_eq!(s.get(&key("q")).await.unwrap(), Some(r), "the refused write changed nothing");
}

pub(crate) async fn fenced_writes_are_refused_after_another_holder_takes_the_lease(s: &dyn Store) {
    let r = s.create(request("q", &[])).await.unwrap();
    let a = s.try_acquire_lease(LeaseClaim::new(CONTROLLER_LEASE, "a", 15_000), None).await.unwrap().unwrap();
    let fence_a = Fence { holder: "a".into(), epoch: a.epoch };
    let mut w = r.clone();
    w.status = Some(status(Phase::Generated, 1));
    let r = s.update_status(&w, Some(&fence_a)).await.unwrap();
    s.put_policy(&Policy::default(), Some(&fence_a)).await.unwrap();

    // b watched the lease unchanged for a full period and takes it over.
    let observed = s.get_lease(CONTROLLER_LEASE).await.unwrap();
    let b =
        s.try_acquire_lease(LeaseClaim::new(CONTROLLER_LEASE, "b", 15_000), observed.as_ref()).await.unwrap().unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    let fence_b = Fence { holder: "b".into(), epoch: b.epoch };

    let mut late = r.clone();
    late.status = Some(status(Phase::Executing, 1));
    assert!(
        matches!(s.update_status(&late, Some(&fence_a)).await, Err(StoreError::Fenced { epoch }) if epoch == b.epoch)
    );
    assert!(matches!(s.put_policy(&Policy::default(), Some(&fence_a)).await, Err(StoreError::Fenced { .. })));
    assert!(matches!(s.finalize(&r, Some(&fence_a)).await, Err(StoreError::Fenced { .. })));
    assert!(matches!(s.renew_lease(CONTROLLER_LEASE, &fence_a).await, Err(StoreError::Fenced { .. })));
    assert_eq!(s.get(&key("q")).await.unwrap(), Some(r.clone()), "the refused write changed nothing");

    let wrong_epoch = Fence { holder: "b".into(), epoch: a.epoch };
    assert!(matches!(s.update_status(&late, Some(&wrong_epoch)).await, Err(StoreError::Fenced { .. })));
    assert_eq!(s.update_status(&late, Some(&fence_b)).await.unwrap().phase(), Phase::Executing);
}

pub(crate) async fn leases_are_acquired_renewed_taken_over_and_released(s: &dyn Store) {
    assert_eq!(s.get_lease("l").await.unwrap(), None);
    let a = s.try_acquire_lease(LeaseClaim::new("l", "a", 10_000), None).await.unwrap().unwrap();
    assert_eq!((a.holder.as_str(), a.epoch, a.renewals, a.duration_ms), ("a", 1, 0, 10_000));
    assert_eq!(s.get_lease("l").await.unwrap(), Some(a.clone()));

    // Held: a contender that observed nothing, or an older state, gets nothing.
    assert_eq!(s.try_acquire_lease(LeaseClaim::new("l", "b", 10_000), None).await.unwrap(), None);
    let fence_a = Fence { holder: "a".into(), epoch: 1 };
    let renewed = s.renew_lease("l", &fence_a).await.unwrap();
    assert_eq!((renewed.epoch, renewed.renewals), (1, 1));
    // The holder's build is recorded with the lease and kept across renewals (`sqlctl version`).
    assert_eq!(a.build, crate::version::encoded());
    assert_eq!(renewed.build, a.build);
    let other = LeaseClaim { build: "{\"version\":\"9.9.9\"}", ..LeaseClaim::new("m", "x", 10_000) };
    assert_eq!(s.try_acquire_lease(other, None).await.unwrap().unwrap().build, other.build);
    assert_eq!(s.get_lease("m").await.unwrap().unwrap().build, other.build);
    // b observed the lease before the renewal: the leader is alive, no takeover.
    assert_eq!(
        s.try_acquire_lease(LeaseClaim::new("l", "b", 10_000), Some(&a)).await.unwrap(),
        None,
        "the leader is alive"
    );
    assert_eq!(s.get_lease("l").await.unwrap(), Some(renewed.clone()));

    // No renewal for a full period after b observed `renewed`: b takes over.
    let b = s.try_acquire_lease(LeaseClaim::new("l", "b", 10_000), Some(&renewed)).await.unwrap().unwrap();
    assert_eq!((b.holder.as_str(), b.epoch, b.renewals), ("b", 2, 0));
    // A second contender that watched the same old state loses the race.
    assert_eq!(
        s.try_acquire_lease(LeaseClaim::new("l", "c", 10_000), Some(&renewed)).await.unwrap(),
        None,
        "a second contender loses"
    );
    assert!(matches!(s.renew_lease("l", &fence_a).await, Err(StoreError::Fenced { epoch: 2 })));
    assert!(matches!(s.release_lease("l", &fence_a).await, Err(StoreError::Fenced { .. })));

    // Release keeps the epoch and clears the holder; the next acquire succeeds at once.
    let fence_b = Fence { holder: "b".into(), epoch: 2 };
    s.release_lease("l", &fence_b).await.unwrap();
    let released = s.get_lease("l").await.unwrap().unwrap();
    assert_eq!((released.holder.as_str(), released.epoch), ("", 2));
    assert!(matches!(s.renew_lease("l", &fence_b).await, Err(StoreError::Fenced { .. })));
    let c = s.try_acquire_lease(LeaseClaim::new("l", "c", 10_000), Some(&released)).await.unwrap().unwrap();
    assert_eq!((c.holder.as_str(), c.epoch), ("c", 3));

    // A released lease can also be taken by a contender that observed nothing.
    s.release_lease("l", &Fence { holder: "c".into(), epoch: 3 }).await.unwrap();
    let d = s.try_acquire_lease(LeaseClaim::new("l", "d", 10_000), None).await.unwrap().unwrap();
    assert_eq!((d.holder.as_str(), d.epoch), ("d", 4));
    // Leases are independent by name.
    assert_eq!(s.try_acquire_lease(LeaseClaim::new("other", "a", 1), None).await.unwrap().unwrap().epoch, 1);
}

pub(crate) async fn decisions_are_created_once_and_listed_in_creation_order(s: &dyn Store) {
    let r = s.create(request("q", &[])).await.unwrap();
    let d1 = decision(&r, "id-1", "alice");
    assert_eq!(s.create_decision(&d1).await.unwrap(), DecisionOutcome::Created(d1.clone()));

    let mut again = d1.clone();
    again.decision = DecisionKind::Reject;
    again.comment = Some("changed my mind".into());
    assert_eq!(s.create_decision(&again).await.unwrap(), DecisionOutcome::Exists(d1.clone()));

    let d0 = decision(&r, "id-0", "bob");
    s.create_decision(&d0).await.unwrap();
    let d2 = decision(&r, "id-2", "bob");
    s.create_decision(&d2).await.unwrap();
    let mut other = decision(&r, "id-3", "carol");
    other.uid = "another-uid".into();
    s.create_decision(&other).await.unwrap();
    assert_eq!(s.list_decisions(r.uid()).await.unwrap(), [d1, d0, d2], "creation order, not id order");
    assert!(s.list_decisions("nobody").await.unwrap().is_empty());
}

pub(crate) async fn decision_records_carry_increasing_seqs_and_list_after_a_mark(s: &dyn Store) {
    let r = s.create(request("q", &[])).await.unwrap();
    let (d1, d2) = (decision(&r, "id-1", "alice"), decision(&r, "id-2", "bob"));
    s.create_decision(&d1).await.unwrap();
    s.create_decision(&d2).await.unwrap();
    let all = s.list_decision_records(r.uid(), 0).await.unwrap();
    assert_eq!(all.iter().map(|r| r.decision.clone()).collect::<Vec<_>>(), [d1.clone(), d2.clone()]);
    assert!(all[0].seq > 0 && all[0].seq < all[1].seq, "{all:?}");
    let after = s.list_decision_records(r.uid(), all[0].seq).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].decision, d2);
    assert!(s.list_decision_records(r.uid(), all[1].seq).await.unwrap().is_empty());

    // A repeat writes nothing and takes no seq; the next record comes after the last one.
    assert!(matches!(s.create_decision(&d1).await.unwrap(), DecisionOutcome::Exists(_)));
    let d3 = decision(&r, "id-3", "carol");
    s.create_decision(&d3).await.unwrap();
    let after = s.list_decision_records(r.uid(), all[1].seq).await.unwrap();
    assert_eq!(after.iter().map(|r| &r.decision).collect::<Vec<_>>(), [&d3]);
    assert!(after[0].seq > all[1].seq, "{after:?}");
    assert_eq!(s.list_decisions(r.uid()).await.unwrap(), [d1, d2, d3], "only decisions are listed");
}

pub(crate) async fn the_history_archive_is_append_only_per_uid_and_idempotent(s: &dyn Store) {
    let r = s.create(request("q", &[])).await.unwrap();
    let key = r.key();
    let (a, b, c) = (entry("A"), entry("B"), entry("C"));
    s.archive_history(ArchiveBatch { key: &key, uid: r.uid(), first_index: 0, entries: &[a.clone(), b.clone()] }, None)
        .await
        .unwrap();
    // A replayed step writes the same indexes again: nothing doubles, nothing is replaced.
    s.archive_history(ArchiveBatch { key: &key, uid: r.uid(), first_index: 0, entries: &[a.clone(), b.clone()] }, None)
        .await
        .unwrap();
    s.archive_history(
        ArchiveBatch { key: &key, uid: r.uid(), first_index: 2, entries: std::slice::from_ref(&c) },
        None,
    )
    .await
    .unwrap();
    let got = s.archived_history(&r.key(), r.uid()).await.unwrap();
    assert_eq!(
        got.iter().map(|e| (e.index, e.entry.event.as_str())).collect::<Vec<_>>(),
        [(0, "A"), (1, "B"), (2, "C")]
    );
    assert!(s.archived_history(&r.key(), "another-uid").await.unwrap().is_empty());
    // Fenced like status writes.
    let stale = Fence { holder: "nobody".into(), epoch: 99 };
    assert!(
        s.archive_history(ArchiveBatch { key: &key, uid: r.uid(), first_index: 3, entries: &[c] }, Some(&stale))
            .await
            .is_err()
    );

    // Many entries at once (more than one DynamoDB batch) keep their index order.
    let r = s.create(request("archived", &[])).await.unwrap();
    let key = r.key();
    let many: Vec<_> = (0..150).map(|i| entry(&format!("E{i}"))).collect();
    s.archive_history(ArchiveBatch { key: &key, uid: r.uid(), first_index: 0, entries: &many }, None).await.unwrap();
    s.archive_history(ArchiveBatch { key: &key, uid: r.uid(), first_index: 0, entries: &many[..3] }, None)
        .await
        .unwrap(); // a replay
    let got = s.archived_history(&r.key(), r.uid()).await.unwrap();
    assert_eq!(got.len(), 150);
    assert!(got.iter().enumerate().all(|(i, e)| e.index == i as u64 && e.entry.event == format!("E{i}")));
    assert!(s.archived_history(&r.key(), "another-uid").await.unwrap().is_empty());
    // The request itself still reads as before.
    assert_eq!(s.get(&r.key()).await.unwrap().unwrap().uid(), r.uid());
}

pub(crate) async fn changes_since_reports_request_writes_decisions_and_deletions_once(s: &dyn Store) {
    let start = s.change_cursor().await.unwrap();
    assert_eq!(s.changes_since(start).await.unwrap().1, []);
    tokio::time::sleep(POLL_GAP).await;

    let a = s.create(request("a", &[])).await.unwrap();
    let b = s.create(request("b", &[])).await.unwrap();
    let (c1, changes) = s.changes_since(start).await.unwrap();
    assert!(c1 >= start);
    assert!(c1 <= s.change_cursor().await.unwrap());
    assert_eq!(
        changes,
        [
            Change { key: key("a"), resource_version: a.metadata.resource_version.clone() },
            Change { key: key("b"), resource_version: b.metadata.resource_version.clone() },
        ]
    );
    assert_eq!(s.changes_since(c1).await.unwrap().1, []);
    tokio::time::sleep(POLL_GAP).await;
    assert_eq!(s.changes_since(c1).await.unwrap().1, [], "each change is reported once");

    // Only the latest version of a record written twice is reported.
    let mut a2 = a.clone();
    a2.status = Some(status(Phase::Generated, 1));
    let a2 = s.update_status(&a2, None).await.unwrap();
    s.create_decision(&decision(&b, "d", "alice")).await.unwrap();
    s.delete(&key("a"), false).await.unwrap();
    tokio::time::sleep(POLL_GAP).await;
    let (c2, changes) = s.changes_since(c1).await.unwrap();
    assert!(c2 > c1);
    assert_eq!(
        changes,
        [Change { key: key("b"), resource_version: None }, Change { key: key("a"), resource_version: None }],
        "a's update was superseded by its deletion; the decision is reported under b's key"
    );
    // Lease and policy writes are not request changes; a poll right after another (here, or
    // within DynamoDB's poll gap) answers with the cursor it was given.
    s.try_acquire_lease(LeaseClaim::new(CONTROLLER_LEASE, "x", 1000), None).await.unwrap();
    s.put_policy(&Policy::default(), None).await.unwrap();
    assert_eq!(s.changes_since(c2).await.unwrap(), (c2, vec![]));
    tokio::time::sleep(POLL_GAP).await;
    assert_eq!(s.changes_since(c2).await.unwrap().1, []);
    assert!(a2.metadata.resource_version.is_some());
}

/// Leaves 10 active records (of 112) in the store.
pub(crate) async fn list_active_skips_finished_and_notified_records(s: &dyn Store) {
    s.create(request("new", &[])).await.unwrap();
    with_status(s, "waiting", status(Phase::AwaitingApproval, 1)).await;
    with_status(s, "done-unnotified", status(Phase::Done, 1)).await;
    with_status(s, "done-notified", notified(Phase::Done)).await;
    with_status(s, "failed-notified", notified(Phase::Failed)).await;
    // Notified for another phase than the current one: still owes a notification.
    let mut marker_for_other_phase = notified(Phase::Done);
    marker_for_other_phase.phase = Phase::Rejected;
    with_status(s, "rejected-wrong-marker", marker_for_other_phase).await;
    // Finished and notified, then the spec changed: a new generation to act on.
    let respec = with_status(s, "respecced", notified(Phase::Done)).await;
    let mut r = respec.clone();
    r.spec.question = Some("again".into());
    s.update_spec(&r).await.unwrap();
    // Finished and notified, then deleted with a finalizer still held.
    let mut fin = with_status(s, "deleting", notified(Phase::Done)).await;
    fin.metadata.finalizers = vec![CANCEL_FINALIZER.into()];
    s.update_status(&fin, None).await.unwrap();
    s.delete(&key("deleting"), false).await.unwrap();

    let names = |keys: Vec<ObjectKey>| keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_active().await.unwrap()),
        ["deleting", "done-unnotified", "new", "rejected-wrong-marker", "respecced", "waiting"]
    );
    assert_eq!(notified_marker(3, Phase::TimedOut), "3/TimedOut");
    let counts = s.count_by_phase().await.unwrap();
    assert_eq!(counts[&Phase::Done], 4);
    assert_eq!(counts[&Phase::Pending], 1);
    assert_eq!(counts.values().sum::<u64>(), 8);

    // 100 finished and notified records more, and 4 active ones: only the active are listed.
    let finished: Vec<_> = (0..100).map(|i| format!("finished-{i:03}")).collect();
    for chunk in finished.chunks(20) {
        let futs = chunk.iter().map(|name| with_status(s, name, notified(Phase::Done)));
        futures::future::join_all(futs).await;
    }
    for i in 0..4 {
        with_status(s, &format!("active-{i}"), status(Phase::Executing, 1)).await;
    }
    assert_eq!(s.list_active().await.unwrap().len(), 10);
    let counts = s.count_by_phase().await.unwrap();
    assert_eq!(counts[&Phase::Done], 104);
    assert_eq!(counts.values().sum::<u64>(), 112);
}

pub(crate) async fn delete_with_a_finalizer_marks_and_finalize_removes(s: &dyn Store) {
    let mut r = s.create(request("q", &[])).await.unwrap();
    r.status = Some(status(Phase::Executing, 1));
    r.metadata.finalizers = vec![CANCEL_FINALIZER.into()];
    let r = s.update_status(&r, None).await.unwrap();

    let marked = s.delete(&key("q"), false).await.unwrap().unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_ne!(marked.metadata.resource_version, r.metadata.resource_version);
    assert_eq!(s.get(&key("q")).await.unwrap(), Some(marked.clone()));
    // Deleting again changes nothing.
    assert_eq!(s.delete(&key("q"), false).await.unwrap(), Some(marked.clone()));
    // No spec changes while being deleted; a status write keeps the deletion mark.
    let mut respec = marked.clone();
    respec.spec.question = Some("other".into());
    assert!(matches!(s.update_spec(&respec).await, Err(StoreError::Other(_))));
    // Finalize refuses while finalizers remain, and on a stale resourceVersion.
    assert!(matches!(s.finalize(&marked, None).await, Err(StoreError::Other(_))), "finalizers remain");
    let mut cancelled = marked.clone();
    cancelled.metadata.finalizers.clear();
    cancelled.status = Some(status(Phase::Failed, 1));
    let cancelled = s.update_status(&cancelled, None).await.unwrap();
    assert!(cancelled.metadata.deletion_timestamp.is_some());
    assert!(matches!(s.finalize(&marked, None).await, Err(StoreError::Conflict { .. })));
    s.finalize(&cancelled, None).await.unwrap();
    assert_eq!(s.get(&key("q")).await.unwrap(), None);
    assert!(matches!(s.finalize(&cancelled, None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.delete(&key("q"), false).await, Err(StoreError::NotFound(_))));

    // Without finalizers, or with force, delete removes at once.
    s.create(request("plain", &[])).await.unwrap();
    assert_eq!(s.delete(&key("plain"), false).await.unwrap(), None);
    let mut held = s.create(request("held", &[])).await.unwrap();
    held.metadata.finalizers = vec![CANCEL_FINALIZER.into()];
    s.update_status(&held, None).await.unwrap();
    assert_eq!(s.delete(&key("held"), true).await.unwrap(), None);
    assert!(s.list(None, &LabelSelector::new()).await.unwrap().is_empty());
    // Finalize needs a deletion mark.
    let live = s.create(request("live", &[])).await.unwrap();
    assert!(matches!(s.finalize(&live, None).await, Err(StoreError::Other(_))));
}

pub(crate) async fn a_recreated_request_never_reuses_a_resource_version(s: &dyn Store) {
    let old = s.create(request("q", &[])).await.unwrap();
    s.delete(&key("q"), false).await.unwrap();
    let new = s.create(request("q", &[])).await.unwrap();
    assert_ne!(old.uid(), new.uid());
    assert_ne!(old.metadata.resource_version, new.metadata.resource_version);
    let mut stale = old.clone();
    stale.status = Some(status(Phase::Done, 1));
    assert!(matches!(s.update_status(&stale, None).await, Err(StoreError::Conflict { .. })));
}

fn model(name: &str, labels: &[(&str, &str)]) -> Object {
    let mut m = crate::spec::SemanticModel::new(name, "tpch");
    m.metadata.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    m.spec.instructions = Some("revenue is net of discount".into());
    Object::SemanticModel(m)
}

fn verified(name: &str) -> Object {
    Object::VerifiedQuery(crate::spec::VerifiedQuery::new(
        name,
        "tpch",
        "How many nations?",
        "select count(*) from nation",
    ))
}

/// The other kinds follow the request rules: create stamps the server fields (whatever the
/// client sent) and refuses an existing key of the same kind only; a name may repeat across
/// kinds; get and list are per kind, list filters by namespace and labels in key order.
pub(crate) async fn objects_are_created_got_and_listed_per_kind(s: &dyn Store) {
    let mut sent = model("tpch", &[("team", "a")]);
    sent.metadata_mut().uid = Some("client-uid".into());
    sent.metadata_mut().generation = Some(9);
    *sent.status_mut() = Some(ObjectStatus { observed_generation: 9, ..Default::default() });
    let created = s.create_object(sent).await.unwrap();
    assert_eq!(created.kind(), ObjectKind::SemanticModel);
    assert_ne!(created.uid(), "client-uid");
    assert_eq!(created.generation(), 1);
    assert_eq!(created.metadata().namespace.as_deref(), Some("default"));
    assert!(created.metadata().resource_version.is_some() && created.metadata().creation_timestamp.is_some());
    assert_eq!(created.status(), None);
    assert!(matches!(s.create_object(model("tpch", &[])).await, Err(StoreError::AlreadyExists(_))));
    // Another kind, the same name; and a request of that name too.
    s.create_object(verified("tpch")).await.unwrap();
    s.create(request("tpch", &[])).await.unwrap();
    let got = s.get_object(ObjectKind::SemanticModel, &key("tpch")).await.unwrap().unwrap();
    assert_eq!(got, created);
    assert!(
        s.get_object(ObjectKind::VerifiedQuery, &key("tpch")).await.unwrap().unwrap().as_verified_query().is_some()
    );
    assert_eq!(s.get_object(ObjectKind::SemanticModel, &key("none")).await.unwrap(), None);
    assert!(s.get_object(ObjectKind::QueryRequest, &key("tpch")).await.is_err());

    s.create_object(model("b-model", &[("team", "b")])).await.unwrap();
    let mut other_ns = model("a-model", &[("team", "a")]);
    other_ns.metadata_mut().namespace = Some("team-x".into());
    s.create_object(other_ns).await.unwrap();
    let names = |v: Vec<Object>| v.iter().map(|o| o.key().to_string()).collect::<Vec<_>>();
    let all = s.list_objects(ObjectKind::SemanticModel, None, &LabelSelector::new()).await.unwrap();
    assert_eq!(names(all), ["default/b-model", "default/tpch", "team-x/a-model"]);
    let default = s.list_objects(ObjectKind::SemanticModel, Some("default"), &LabelSelector::new()).await.unwrap();
    assert_eq!(names(default), ["default/b-model", "default/tpch"]);
    let team_a = LabelSelector::from([("team".to_string(), "a".to_string())]);
    assert_eq!(
        names(s.list_objects(ObjectKind::SemanticModel, None, &team_a).await.unwrap()),
        ["default/tpch", "team-x/a-model"]
    );
    assert_eq!(
        names(s.list_objects(ObjectKind::VerifiedQuery, None, &LabelSelector::new()).await.unwrap()),
        ["default/tpch"]
    );
    // Requests are not listed as objects, nor objects as requests.
    assert_eq!(s.list(None, &LabelSelector::new()).await.unwrap().len(), 1);
}

/// Updates are compare-and-set on resourceVersion (a stale one conflicts, so one of two
/// writers wins); the generation moves only when the spec changes; a status write leaves the
/// spec alone, is fenced, and a spec write leaves the status alone; delete removes and a second
/// delete is NotFound; a recreated object never reuses a resourceVersion.
pub(crate) async fn object_updates_are_compare_and_set_with_generations(s: &dyn Store) {
    let created = s.create_object(model("m", &[])).await.unwrap();
    // Labels only: same generation.
    let mut relabel = created.clone();
    relabel.metadata_mut().labels.insert("team".into(), "a".into());
    let relabelled = s.update_object(&relabel).await.unwrap();
    assert_eq!(relabelled.generation(), 1);
    assert_ne!(relabelled.metadata().resource_version, created.metadata().resource_version);
    // The first writer's resourceVersion is now stale.
    let mut stale = created.clone();
    if let Object::SemanticModel(m) = &mut stale {
        m.spec.instructions = Some("stale".into());
    }
    assert!(matches!(s.update_object(&stale).await, Err(StoreError::Conflict { .. })));
    // A spec change bumps the generation.
    let mut respec = relabelled.clone();
    if let Object::SemanticModel(m) = &mut respec {
        m.spec.instructions = Some("fiscal years start in July".into());
    }
    let v2 = s.update_object(&respec).await.unwrap();
    assert_eq!(v2.generation(), 2);
    assert_eq!(v2.metadata().labels.get("team").map(String::as_str), Some("a"));
    // Status: through its own call only; fenced; spec untouched.
    let mut with_status = v2.clone();
    *with_status.status_mut() = Some(ObjectStatus { observed_generation: 2, ..Default::default() });
    with_status.status_mut().as_mut().unwrap().set_condition(STALE_CONDITION, "False", "Planned", "");
    if let Object::SemanticModel(m) = &mut with_status {
        m.spec.instructions = Some("ignored by a status write".into());
    }
    let fence = Fence { holder: "nobody".into(), epoch: 1 };
    assert!(matches!(s.update_object_status(&with_status, Some(&fence)).await, Err(StoreError::Fenced { .. })));
    let v3 = s.update_object_status(&with_status, None).await.unwrap();
    assert_eq!(v3.generation(), 2);
    assert_eq!(v3.status().unwrap().observed_generation, 2);
    assert_eq!(v3.as_semantic_model().unwrap().spec.instructions.as_deref(), Some("fiscal years start in July"));
    assert!(matches!(s.update_object_status(&with_status, None).await, Err(StoreError::Conflict { .. })));
    // A spec write keeps the status.
    let v4 = s.update_object(&v3).await.unwrap();
    assert_eq!(v4.status(), v3.status());
    assert_eq!(s.get_object(ObjectKind::SemanticModel, &key("m")).await.unwrap().unwrap(), v4);
    // Delete, and recreate.
    s.delete_object(ObjectKind::SemanticModel, &key("m")).await.unwrap();
    assert!(matches!(s.delete_object(ObjectKind::SemanticModel, &key("m")).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.get_object(ObjectKind::SemanticModel, &key("m")).await.unwrap(), None);
    let again = s.create_object(model("m", &[])).await.unwrap();
    assert_ne!(again.uid(), created.uid());
    assert!(matches!(s.update_object(&v4).await, Err(StoreError::Conflict { .. })));
    let mut missing = again.clone();
    missing.metadata_mut().name = "absent".into();
    assert!(matches!(s.update_object(&missing).await, Err(StoreError::NotFound(_))));
}

/// One `#[tokio::test]` per shared case, on a fresh store from `$make`: an expression whose
/// `.await` gives `Option<(guard, store)>` (None: the backend's tests are skipped; the guard
/// lives as long as the test, e.g. the SQLite store's temporary directory).
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store::conformance::store_conformance!(
            @cases $make;
            create_sets_server_fields_and_refuses_an_existing_key,
            list_filters_by_namespace_and_labels_in_key_order,
            a_stale_resource_version_conflicts_so_only_one_writer_wins,
            generation_moves_only_when_the_spec_changes,
            update_status_leaves_spec_and_generation_alone,
            a_fence_without_any_lease_is_refused,
            fenced_writes_are_refused_after_another_holder_takes_the_lease,
            leases_are_acquired_renewed_taken_over_and_released,
            decisions_are_created_once_and_listed_in_creation_order,
            decision_records_carry_increasing_seqs_and_list_after_a_mark,
            the_history_archive_is_append_only_per_uid_and_idempotent,
            changes_since_reports_request_writes_decisions_and_deletions_once,
            list_active_skips_finished_and_notified_records,
            delete_with_a_finalizer_marks_and_finalize_removes,
            a_recreated_request_never_reuses_a_resource_version,
            objects_are_created_got_and_listed_per_kind,
            object_updates_are_compare_and_set_with_generations,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((_guard, s)) = $make.await else { return };
                $crate::store::conformance::$case(&s).await
            }
        )*
    };
}
pub(crate) use store_conformance;
