//! `watch-bench --quick` runs end to end (server, child client process, store baseline)
//! in a few seconds and ends with its summary line.

use std::process::Command;

#[test]
fn quick_watch_bench_prints_its_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_watch-bench"))
        .arg("--quick")
        .output()
        .expect("run watch-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "watch-bench failed:\n{stdout}\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix("watch fan-out: 50 watchers, ")
        .unwrap_or_else(|| panic!("unexpected last line {last:?}"));
    let (rate, rest) = rest.split_once(" events/s, p99 ").expect("events/s");
    let (p99, rest) = rest.split_once(" ms (store direct: ").expect("p99");
    let direct = rest.strip_suffix(" events/s)").expect("store direct");
    for figure in [rate, p99, direct] {
        assert!(figure.parse::<f64>().is_ok_and(|f| f >= 0.0), "{last:?}");
    }
    assert!(rate.parse::<f64>().is_ok_and(|r| r > 0.0), "{last:?}");
}
