//! Writing: rotation, restarts, crashes mid-line, fsync, failures.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use fhirgate_audit::{AuditSink, Durability, Interaction, ManualClock, verify};

use crate::support::{config, files, input, read_lines, t0, write_n};

fn intact(dir: &std::path::Path) -> fhirgate_audit::VerifyReport {
    let report = verify(&[dir.to_path_buf()]).unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    report
}

#[tokio::test]
async fn size_rotation_keeps_the_chain_and_names_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_size = 4096;
    let sink = AuditSink::open(&cfg).unwrap();
    write_n(&sink, 1, 40).await;
    let f = files(dir.path());
    assert!(f.len() >= 5, "{f:?}");
    for file in &f {
        let len = std::fs::metadata(file).unwrap().len();
        assert!(len <= 4096, "{} is {len} bytes", file.display());
    }
    // File names sort in chain order, so a shell glob gives the same order.
    let mut names: Vec<_> = f
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted);
    names.clear();
    let report = intact(dir.path());
    assert_eq!(report.records, 40);
    assert_eq!(report.files.len(), f.len());
}

#[tokio::test]
async fn daily_rotation_follows_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let sink = AuditSink::open_with_clock(&config(dir.path()), Arc::new(clock.clone())).unwrap();
    write_n(&sink, 1, 3).await;
    clock.advance(Duration::from_secs(13 * 3600)); // 23:00, same UTC day
    write_n(&sink, 4, 1).await;
    clock.advance(Duration::from_secs(3600)); // 00:00 next day
    write_n(&sink, 5, 2).await;
    let f = files(dir.path());
    let names: Vec<String> = f
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "audit-000000000001-20261129.jsonl",
            "audit-000000000005-20261130.jsonl"
        ]
    );
    assert_eq!(intact(dir.path()).records, 6);
}

#[tokio::test]
async fn a_restart_continues_the_chain_in_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    write_n(&sink, 1, 3).await;
    drop(sink);
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    write_n(&sink, 4, 2).await;
    let f = files(dir.path());
    assert_eq!(f.len(), 1);
    let report = intact(dir.path());
    assert_eq!(report.records, 5);
    assert_eq!(report.head.map(|h| h.0), Some(5));
}

#[tokio::test]
async fn a_partial_last_line_starts_a_new_file_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    write_n(&sink, 1, 3).await;
    drop(sink);
    // A process killed mid-write leaves part of a line.
    let first = files(dir.path())[0].clone();
    let before = std::fs::read(&first).unwrap();
    let mut damaged = before.clone();
    damaged.extend_from_slice(br#"{"seq":4,"prev":"ab"#);
    std::fs::write(&first, &damaged).unwrap();

    // Before restart, verify reports the truncation but no break.
    let report = intact(dir.path());
    assert_eq!(report.truncations.len(), 1);
    assert_eq!(report.truncations[0].at.line, 4);

    let sink = AuditSink::open(&config(dir.path())).unwrap();
    write_n(&sink, 4, 2).await;
    let f = files(dir.path());
    assert_eq!(f.len(), 2);
    assert_eq!(std::fs::read(&first).unwrap(), damaged, "left untouched");
    let lines = read_lines(&f[1]);
    assert_eq!(lines.len(), 3, "notice + 2 records");
    let (seq, notice) = fhirgate_audit::search::parse_record(lines[0].as_bytes()).unwrap();
    assert_eq!(seq, 4);
    assert_eq!(notice.type_.code, "110100");
    assert!(
        notice
            .outcome_desc
            .unwrap()
            .contains("incomplete record of 19 bytes"),
    );
    let report = intact(dir.path());
    assert_eq!(report.records, 6);
    assert_eq!(report.truncations.len(), 1);
}

/// `tasks` tasks each recording `per_task` records at once through clones of `sink`.
async fn record_concurrently(sink: &AuditSink, tasks: u64, per_task: u64, kind: Interaction) {
    let running: Vec<_> = (0..tasks)
        .map(|t| {
            let sink = sink.clone();
            tokio::spawn(async move {
                for k in 0..per_task {
                    sink.record(input(t * 100 + k, kind, &["p1"]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in running {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn fsync_mode_with_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.durability = Durability::Fsync;
    cfg.rotate_size = 64 * 1024;
    let sink = AuditSink::open(&cfg).unwrap();
    record_concurrently(&sink, 20, 10, Interaction::SearchType).await;
    assert!(sink.is_healthy());
    assert_eq!(sink.queue_depth(), 0);
    let report = intact(dir.path());
    assert_eq!(report.records, 200);
}

/// `durability: os`: records are group-committed on the requests' runtime, and overflow to
/// the writer thread; either way one chain, every record once, in rotated files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn os_mode_with_concurrent_writers_keeps_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.durability = Durability::Os;
    cfg.rotate_size = 64 * 1024;
    let sink = AuditSink::open(&cfg).unwrap();
    record_concurrently(&sink, 40, 50, Interaction::Read).await;
    assert!(sink.is_healthy());
    assert_eq!(sink.queue_depth(), 0);
    let report = intact(dir.path());
    assert_eq!(report.records, 2000);
}

/// The gateway's runtime on a one-CPU host: every record of every group lands, in one chain.
#[tokio::test(flavor = "current_thread")]
async fn os_mode_on_one_thread_keeps_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_size = 64 * 1024;
    let sink = AuditSink::open(&cfg).unwrap();
    record_concurrently(&sink, 40, 50, Interaction::Read).await;
    assert!(sink.is_healthy());
    let report = intact(dir.path());
    assert_eq!(report.records, 2000);
}

/// Once `record` has been polled its record is in a group: a request dropped while it waits
/// (the client went away) still leaves its record, and does not strand the records that
/// joined its group after it.
#[tokio::test(flavor = "current_thread")]
async fn a_record_abandoned_while_its_group_waits_still_lands() {
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    let mut abandoned = Box::pin(sink.record(input(1, Interaction::Read, &["p1"])));
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(abandoned.as_mut().poll(cx))).await;
    assert!(first_poll.is_pending(), "the record waits for its group");
    drop(abandoned);
    let next = sink.record(input(2, Interaction::Read, &["p2"]));
    tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the group is written without the request that opened it")
        .unwrap();
    let lines = read_lines(&files(dir.path())[0]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("req-1") && lines[1].contains("req-2"));
    assert_eq!(intact(dir.path()).records, 2);
}

#[tokio::test]
async fn an_unwritable_directory_turns_the_sink_unhealthy_until_writes_succeed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let clock = ManualClock::new(t0());
    let sink = AuditSink::open_with_clock(&config(&dir), Arc::new(clock.clone())).unwrap();
    write_n(&sink, 1, 2).await;
    assert!(sink.is_healthy());

    // The directory disappears (unmounted volume, replaced path); the next day's file cannot
    // be created. This works even as root, where permission bits would not stop us.
    let moved = root.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    clock.advance(Duration::from_secs(86_400));
    let err = sink
        .record(input(3, Interaction::Read, &["p1"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit write"), "{err}");
    assert!(!sink.is_healthy());
    assert_eq!(sink.write_errors(), 1);
    assert!(sink.last_error().is_some());
    // Still failing: still an error, never a silent drop.
    assert!(
        sink.record(input(4, Interaction::Read, &["p1"]))
            .await
            .is_err()
    );
    assert!(!sink.is_healthy());

    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    sink.record(input(5, Interaction::Read, &["p1"]))
        .await
        .unwrap();
    assert!(sink.is_healthy());
    let report = intact(&dir);
    // 2 records, a notice explaining the failure, then the record that succeeded.
    assert_eq!(report.records, 4);
    let last_file = files(&dir).pop().unwrap();
    let lines = read_lines(&last_file);
    let (_, notice) = fhirgate_audit::search::parse_record(lines[0].as_bytes()).unwrap();
    assert!(
        notice
            .outcome_desc
            .unwrap()
            .contains("failed and has resumed")
    );
}

#[tokio::test]
async fn a_corrupt_last_line_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    write_n(&sink, 1, 1).await;
    drop(sink);
    let f = files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(b"hello\n");
    std::fs::write(&f, bytes).unwrap();
    let err = AuditSink::open(&config(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("cannot continue the audit chain"),
        "{err}"
    );
}

#[tokio::test]
async fn the_memory_sink_keeps_events_for_tests() {
    let (sink, log) = AuditSink::memory("test-gw");
    sink.record(input(1, Interaction::Create, &["p7"]))
        .await
        .unwrap();
    sink.record(input(2, Interaction::Delete, &[]))
        .await
        .unwrap();
    let events = log.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].patients().collect::<Vec<_>>(), ["p7"]);
    assert_eq!(events[1].action, Some(fhirgate_audit::Action::Delete));
    assert_eq!(
        events[0].source.observer.display.as_deref(),
        Some("test-gw")
    );
    assert!(log.lines()[1].starts_with(r#"{"seq":2,"prev":""#));
}
