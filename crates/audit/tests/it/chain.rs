//! Tampering with written files is detected, with the right place named.

use fhirgate_audit::{AuditSink, BreakKind, verify};

use crate::support::{config, files, read_lines, write_lines, write_n};

/// Ten records in one file.
async fn ten_records() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sink = AuditSink::open(&config(dir.path())).unwrap();
    write_n(&sink, 1, 10).await;
    let f = files(dir.path());
    assert_eq!(f.len(), 1);
    (dir, f[0].clone())
}

#[tokio::test]
async fn untouched_chain_verifies() {
    let (dir, file) = ten_records().await;
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.records, 10);
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.head.as_ref().map(|h| h.0), Some(10));
    assert_eq!(report.files, vec![file.clone()]);
    // The explicit file gives the same answer as the directory.
    assert!(verify(&[file]).unwrap().is_intact());
}

#[tokio::test]
async fn an_edited_record_is_detected_at_the_next_line() {
    let (dir, file) = ten_records().await;
    let mut lines = read_lines(&file);
    lines[4] = lines[4]
        .replace("\"p1\"", "\"p2\"")
        .replace("Patient/p1", "Patient/p2");
    write_lines(&file, &lines);
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    let b = report.first_break().unwrap();
    assert_eq!(b.kind, BreakKind::HashMismatch { seq: 6 });
    assert_eq!(b.at.line, 6);
    assert_eq!(
        b.previous.as_ref().unwrap().line,
        5,
        "names the edited record"
    );
    assert_eq!(report.break_count, 1);
    assert!(b.to_string().contains("altered"), "{b}");
}

#[tokio::test]
async fn a_deleted_record_is_detected() {
    let (dir, file) = ten_records().await;
    let mut lines = read_lines(&file);
    lines.remove(3);
    write_lines(&file, &lines);
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    let b = report.first_break().unwrap();
    assert_eq!(
        b.kind,
        BreakKind::Missing {
            expected: 4,
            found: 5
        }
    );
    assert_eq!((b.at.file.clone(), b.at.line), (file, 4));
    assert!(b.to_string().contains("records 4..=4 are missing"), "{b}");
}

#[tokio::test]
async fn reordered_records_are_detected() {
    let (dir, file) = ten_records().await;
    let mut lines = read_lines(&file);
    lines.swap(6, 7);
    write_lines(&file, &lines);
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    assert!(!report.is_intact());
    assert_eq!(report.first_break().unwrap().at.line, 7);
}

#[tokio::test]
async fn a_missing_file_in_the_middle_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.rotate_size = 4096;
    let sink = AuditSink::open(&cfg).unwrap();
    write_n(&sink, 1, 30).await;
    let f = files(dir.path());
    assert!(f.len() >= 3, "{f:?}");
    assert!(verify(&[dir.path().to_path_buf()]).unwrap().is_intact());
    let first_of_third =
        fhirgate_audit::files::LogFileName::parse(f[2].file_name().unwrap().to_str().unwrap())
            .unwrap()
            .first_seq;
    std::fs::remove_file(&f[1]).unwrap();
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    let b = report.first_break().unwrap();
    assert_eq!((b.at.file.clone(), b.at.line), (f[2].clone(), 1));
    assert!(
        matches!(b.kind, BreakKind::Missing { found, .. } if found == first_of_third),
        "{b}"
    );
    assert_eq!(report.break_count, 1);
}

#[tokio::test]
async fn garbage_and_a_forged_genesis_are_breaks() {
    let (dir, file) = ten_records().await;
    let mut lines = read_lines(&file);
    lines[2] = "not json".to_owned();
    write_lines(&file, &lines);
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    assert!(matches!(
        report.first_break().unwrap().kind,
        BreakKind::Malformed { .. }
    ));

    let (dir, file) = ten_records().await;
    let mut lines = read_lines(&file);
    lines[0] = lines[0].replacen(&"0".repeat(64), &"1".repeat(64), 1);
    write_lines(&file, &lines);
    let report = verify(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(report.first_break().unwrap().kind, BreakKind::BadGenesis);
}
