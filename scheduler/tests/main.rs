//! The scheduler's integration tests, in one binary so the EC2 SDK (which the run reaches through the
//! targets) is linked once rather than once per file.

mod daemon_clock;
mod gate_props;
mod outbox;
mod run_props;

/// Every test file here is one of the modules above (cargo builds only this file: none may be left out).
#[test]
fn every_test_file_is_in_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let missing = testkit::test_files_not_declared(&dir, include_str!("main.rs"));
    assert!(missing.is_empty(), "add `mod …;` to tests/main.rs for {missing:?}");
}
