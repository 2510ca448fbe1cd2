//! The `simulate` program: JSON output, trace file, exit codes.

use std::process::Command;

fn simulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn documented_example_prints_one_json_object() {
    let (code, stdout, _) = simulate(&[
        "--nodes",
        "1024",
        "--topology",
        "exponential",
        "--schedule",
        "exact",
        "--dim",
        "4",
        "--tol",
        "1e-12",
        "--drop",
        "0.1",
        "--crash",
        "3@5,17@9",
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["nodes"], 1024);
    assert_eq!(v["converged"], true);
    assert!(v["rounds"].as_u64().unwrap() <= 12);
    assert_eq!(v["exact_rounds_bound"], 12);
    assert!(
        v["spectral_rounds_bound"].is_null(),
        "no spectral bound for the exact schedule"
    );
    assert!(v["max_abs_error"].as_f64().unwrap() <= 1e-12);
    let survivors = v["survivors"].as_u64().unwrap();
    let crashed = v["crashed"].as_u64().unwrap();
    assert_eq!(survivors + crashed, 1024);
    assert!(crashed <= 2);
}

#[test]
fn metropolis_reports_its_spectral_bound_and_writes_a_trace() {
    let trace = std::env::temp_dir().join(format!("dac-trace-{}.csv", std::process::id()));
    let trace_arg = trace.to_str().unwrap();
    let (code, stdout, _) = simulate(&[
        "--nodes",
        "64",
        "--topology",
        "torus",
        "--schedule",
        "metropolis",
        "--tol",
        "1e-9",
        "--crash",
        "5@10",
        "--trace",
        trace_arg,
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let bound = v["spectral_rounds_bound"].as_u64().unwrap();
    assert!((150..=190).contains(&bound), "8x8 torus: {bound}");
    assert_eq!(v["survivors"], 63);
    assert_eq!(v["departed"], serde_json::json!([5]));
    assert!(v["max_abs_error"].as_f64().unwrap() <= 1e-9);
    let csv = std::fs::read_to_string(&trace).unwrap();
    let _ = std::fs::remove_file(&trace);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("round,nodes,max_error,residual,mass_defect")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len() as u64, v["rounds"].as_u64().unwrap() + 1);
    assert_eq!(rows[0][1], 64.0);
    let last = rows.last().unwrap();
    assert!(
        last[2] <= 1e-9,
        "the error falls below tol by the last round"
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["--topology", "star"][..],
        &["--nodes", "-3"],
        &["--schedule", "laplacian:2", "--topology", "ring"],
        &["--nodes", "8", "--topology", "ring"],
        &["--drop", "1.5"],
        &["--crash", "99@1", "--nodes", "8"],
        &["--freeze", "2@5..3", "--nodes", "8"],
        &["--cut", "0-0@1..2", "--nodes", "8"],
        &["--suspect-after", "0"],
        &["--edges", "/nonexistent/edges.txt"],
    ] {
        let (code, stdout, stderr) = simulate(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("simulate: "));
    }
}

#[test]
fn a_run_that_does_not_converge_exits_1() {
    let (code, stdout, _) = simulate(&[
        "--nodes",
        "64",
        "--topology",
        "ring",
        "--schedule",
        "metropolis",
        "--max-rounds",
        "20",
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["converged"], false);
    assert!(
        v["failures"][0]
            .as_str()
            .unwrap()
            .contains("not converged after 20 rounds")
    );
}

/// A member frozen past the detector's timeout: the others go on without
/// it, it learns it was excluded, and the run is not converged (exit 1).
#[test]
fn a_frozen_member_is_reported_as_failed() {
    let (code, stdout, _) = simulate(&[
        "--nodes",
        "16",
        "--schedule",
        "metropolis",
        "--tol",
        "1e-9",
        "--suspect-after",
        "5",
        "--freeze",
        "2@4..40",
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["converged"], false);
    assert_eq!(v["survivors"], 15);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["departed"], serde_json::json!([2]));
    assert!(v["max_abs_error"].as_f64().unwrap() <= 1e-9);
    let failure = v["failures"][0].as_str().unwrap();
    assert!(failure.starts_with("member 2:") && failure.contains("excluded"));
}
