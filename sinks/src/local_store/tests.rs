use std::ops::ControlFlow;
use std::sync::Arc;

use auditflow_core::event::{AuditEvent, Event, Payload};

use super::partition::{self, parse_micros, Day, MICROS_PER_DAY};
use super::read::{EventFilter, Field, Store, TimeRange};
use super::writer::Writer;

fn audit(id: &str, stage: &str, time: &str, verb: &str, user: &str, namespace: &str) -> Event {
    let text = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"{stage}","requestURI":"/api/v1/namespaces/{namespace}/configmaps/app-config","verb":"{verb}","user":{{"username":"{user}","groups":["devs","system:authenticated"]}},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.31.0","objectRef":{{"resource":"configmaps","namespace":"{namespace}","name":"app-config","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"}}"#
    );
    let event = AuditEvent::parse(&text).expect("a valid test event");
    Event::new(Payload::Audit(Arc::new(event)), "test".into())
}

fn now() -> i64 {
    parse_micros("2026-11-25T10:00:00Z").unwrap()
}

fn all_events(store: &mut Store, filter: &EventFilter) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .for_each_event(&TimeRange::default(), filter, |stored| {
            ids.push(stored.event.header().audit_id().to_string());
            ControlFlow::Continue(())
        })
        .unwrap();
    ids
}

#[test]
fn the_same_events_twice_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::new(dir.path().to_path_buf(), 90, 3).unwrap();
    let batch = vec![
        audit(
            "a",
            "ResponseComplete",
            "2026-11-24T10:00:00.000001Z",
            "delete",
            "alice",
            "production",
        ),
        audit(
            "a",
            "RequestReceived",
            "2026-11-24T10:00:00.000000Z",
            "delete",
            "alice",
            "production",
        ),
        audit(
            "b",
            "ResponseComplete",
            "2026-11-23T23:59:59.999999Z",
            "get",
            "bob",
            "default",
        ),
    ];
    let first = writer.write(&batch, now()).unwrap();
    assert_eq!((first.stored, first.duplicates), (3, 0));
    let second = writer.write(&batch, now()).unwrap();
    assert_eq!((second.stored, second.duplicates), (0, 3));
    writer.close();
    let days: Vec<String> = partition::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(day, _)| day.to_string())
        .collect();
    assert_eq!(days, ["2026-11-23", "2026-11-24"]);
    let mut store = Store::open(dir.path()).unwrap();
    // Newest first, across partitions.
    assert_eq!(
        all_events(&mut store, &EventFilter::default()),
        ["a", "a", "b"]
    );
    let deletes = EventFilter {
        verb: Some("delete".into()),
        namespace: Some("production".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        store.count_events(&TimeRange::default(), &deletes).unwrap(),
        2
    );
    let by_user = store
        .group_events(&TimeRange::default(), &EventFilter::default(), Field::User)
        .unwrap();
    assert_eq!(by_user, [("alice".to_string(), 2), ("bob".to_string(), 1)]);
    let by_group = store
        .group_events(&TimeRange::default(), &EventFilter::default(), Field::Group)
        .unwrap();
    assert_eq!(
        by_group,
        [
            ("devs".to_string(), 3),
            ("system:authenticated".to_string(), 3)
        ]
    );
    assert!(store.errors.is_empty());
}

#[test]
fn retention_deletes_the_days_entirely_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::new(dir.path().to_path_buf(), 2, 3).unwrap();
    let today = Day::of_micros(now());
    for days_ago in 0..5 {
        let day = today.plus_days(-days_ago);
        std::fs::write(partition::path_of(dir.path(), day), b"").unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
    let deleted = writer.apply_retention(now()).unwrap();
    let names: Vec<String> = deleted
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Two days of retention at 10:00 on the 25th: the 23rd (ended 34 hours ago) is kept.
    assert_eq!(names, ["2026-11-21.sqlite", "2026-11-22.sqlite"]);
    let left: Vec<String> = partition::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(day, _)| day.to_string())
        .collect();
    assert_eq!(left, ["2026-11-23", "2026-11-24", "2026-11-25"]);
    assert!(dir.path().join("notes.txt").exists());
    // Events of a deleted day are not written back.
    let old = audit(
        "x",
        "ResponseComplete",
        "2026-11-22T12:00:00Z",
        "get",
        "bob",
        "default",
    );
    let summary = writer.write(&[old], now()).unwrap();
    assert_eq!((summary.stored, summary.expired), (0, 1));
    assert_eq!(
        writer.oldest_kept_day(now() + MICROS_PER_DAY).to_string(),
        "2026-11-24"
    );
}

/// A store whose 2026-11-24 partition holds the one event `a`.
fn store_holding_one_event() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::new(dir.path().to_path_buf(), 90, 3).unwrap();
    let batch = vec![audit(
        "a",
        "ResponseComplete",
        "2026-11-24T10:00:00Z",
        "get",
        "alice",
        "default",
    )];
    writer.write(&batch, now()).unwrap();
    writer.close();
    dir
}

#[test]
fn a_damaged_partition_is_named_and_the_others_are_read() {
    let dir = store_holding_one_event();
    let damaged = partition::path_of(dir.path(), Day::parse("2026-11-23").unwrap());
    std::fs::write(&damaged, vec![b'x'; 8192]).unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(all_events(&mut store, &EventFilter::default()), ["a"]);
    assert_eq!(store.errors.len(), 1);
    assert_eq!(store.errors[0].path, damaged);
    assert!(store.errors[0].to_string().contains("2026-11-23.sqlite"));
}

#[test]
fn a_partition_still_being_created_reads_as_empty() {
    let dir = store_holding_one_event();
    // What a reader finds between the writer creating the file and committing its schema.
    let creating = partition::path_of(dir.path(), Day::parse("2026-11-25").unwrap());
    std::fs::write(&creating, b"").unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(all_events(&mut store, &EventFilter::default()), ["a"]);
    assert!(store.errors.is_empty(), "{:?}", store.errors.len());
}

fn at(id: &str, time: &str) -> Event {
    audit(id, "ResponseComplete", time, "get", "alice", "default")
}

#[test]
fn replays_are_recognised_after_a_restart_within_a_batch_and_late() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::new(dir.path().to_path_buf(), 90, 1).unwrap();
    let first = vec![
        at("a", "2026-11-24T10:00:00Z"),
        at("b", "2026-11-24T10:00:01Z"),
    ];
    assert_eq!(writer.write(&first, now()).unwrap().stored, 2);
    writer.close();
    drop(writer);
    // A restart forgets the window: the replayed events are found in the blocks.
    let mut writer = Writer::new(dir.path().to_path_buf(), 90, 1).unwrap();
    let replay = vec![
        at("b", "2026-11-24T10:00:01Z"),
        at("c", "2026-11-24T10:00:02Z"),
        at("c", "2026-11-24T10:00:02Z"),
        // Earlier than what is stored, and new: stored.
        at("late", "2026-11-24T09:00:00Z"),
        // The same auditID at another time is another event.
        at("a", "2026-11-24T10:00:03Z"),
    ];
    let summary = writer.write(&replay, now()).unwrap();
    assert_eq!((summary.stored, summary.duplicates), (3, 2));
    // And again, from the window this time.
    let summary = writer.write(&replay, now()).unwrap();
    assert_eq!((summary.stored, summary.duplicates), (0, 5));
    writer.close();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(
        all_events(&mut store, &EventFilter::default()),
        ["a", "c", "b", "a", "late"]
    );
}

#[test]
fn a_second_writer_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Writer::new(dir.path().to_path_buf(), 90, 1).unwrap();
    let Err(error) = Writer::new(dir.path().to_path_buf(), 90, 1) else {
        panic!("a second writer was let in");
    };
    assert!(
        format!("{error:#}").contains("two processes must not write one local_store"),
        "{error:#}"
    );
}
