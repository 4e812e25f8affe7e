//! The benchmark program keeps working: a quick run against both backends prints its
//! table and the ratio line the README quotes.

use std::process::Command;

#[test]
fn store_bench_quick_prints_its_table_and_ratio() {
    let out = Command::new(env!("CARGO_BIN_EXE_store-bench"))
        .arg("--quick")
        .output()
        .expect("run store-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "durable puts, 1 writer",
        "durable puts, 64 writers",
        "batched txn puts, batches of 100 ",
        "batched txn puts, batches of 1000",
        "watch delivery p99, 100 watchers",
        "list 2000 keys",
    ] {
        assert!(stdout.contains(row), "missing row {row:?} in:\n{stdout}");
    }
    let last = stdout.lines().last().expect("output");
    let ratio: f64 = last
        .strip_prefix("embedded/etcd batched-write ratio: ")
        .unwrap_or_else(|| panic!("last line is {last:?}"))
        .parse()
        .expect("a number");
    assert!(ratio > 0.0);
}
