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
    // Five rounds (the default), each reported, then the median round's report.
    let rounds: Vec<&str> = stdout.lines().filter(|l| l.starts_with("round ")).collect();
    assert_eq!(rounds.len(), 5, "{stdout}");
    assert!(
        rounds.iter().all(|l| l.contains("5000 of 5000 committed")),
        "{stdout}"
    );
    let by_round = stdout
        .lines()
        .find_map(|l| l.strip_prefix("P by round, lowest first: "))
        .unwrap_or_else(|| panic!("no P by round line: {stdout}"));
    let ps: Vec<u64> = by_round
        .split(';')
        .next()
        .unwrap_or_default()
        .split(", ")
        .map(|p| p.trim_end_matches('%').parse().expect("a P"))
        .collect();
    assert_eq!(ps.len(), 5, "{by_round}");
    assert!(
        ps.windows(2).all(|w| w[0] <= w[1]),
        "lowest first: {by_round}"
    );
    let n: u64 = n.parse().expect("N is an integer");
    let m: u64 = m.parse().expect("M is an integer");
    let p: u64 = p.parse().expect("P is an integer");
    assert_eq!(p, ps[2], "the last line is the median round: {stdout}");
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

#[test]
fn bench_schedule_refuses_rounds_on_someone_elses_etcd() {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "bench",
            "schedule",
            "--nodes",
            "10",
            "--tasks",
            "10",
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
            "--rounds",
            "2",
        ])
        .output()
        .expect("run drover");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--rounds 2 needs a fresh store per round"),
        "{stderr}"
    );
}
