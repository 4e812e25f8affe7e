//! `drover bench schedule` end to end: the real binary, a real embedded store (WAL and
//! fsync in a temporary directory), every task placed and committed.

use std::process::Command;

#[test]
fn bench_schedule_commits_every_task_and_ends_with_the_rate_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["bench", "schedule", "--nodes", "200", "--tasks", "5000"])
        .output()
        .expect("run drover");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // Every task committed, and the store holds exactly that many Task keys.
    assert!(
        stdout.contains("committed: 5000 of 5000 tasks")
            && stdout.contains("(0 unplaced); 5000 task keys in the store"),
        "{stdout}"
    );

    // The last line: `placements/s: N (ceiling M/s, P%)` with N > 0.
    let last = stdout.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix("placements/s: ")
        .unwrap_or_else(|| panic!("last line {last:?}"));
    let (n, rest) = rest.split_once(" (ceiling ").expect("ceiling");
    let (m, rest) = rest.split_once("/s, ").expect("/s, ");
    let p = rest.strip_suffix("%)").expect("%)");
    let n: u64 = n.parse().expect("N is an integer");
    let m: u64 = m.parse().expect("M is an integer");
    let _: u64 = p.parse().expect("P is an integer");
    assert!(n > 0 && m > 0, "{last}");
}

#[test]
fn bench_schedule_rejects_zero_nodes_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["bench", "schedule", "--nodes", "0", "--tasks", "10"])
        .output()
        .expect("run drover");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--nodes must be at least 1"), "{stderr}");
}
