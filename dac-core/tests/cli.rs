//! The `simulate` program: JSON output, trace file, exit codes, `--help`,
//! the README's option table and the shell completions.

use std::collections::BTreeSet;
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
        "--np",
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
        "--np",
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

/// A run far beyond the memory it may use is refused up front, with the
/// figures, instead of dying by SIGABRT in the allocator (it did, under a
/// 6 GB cap).
#[test]
fn a_run_that_cannot_fit_in_memory_exits_2_saying_how_much_it_needs() {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 6291456 && exec \"$0\" -n 1000 --dim 100000000")
        .arg(env!("CARGO_BIN_EXE_simulate"))
        .output()
        .expect("sh runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("need at least") && err.contains("6.0 GiB are available"),
        "{err}"
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["--topology", "star"][..],
        &["--np", "-3"],
        &["--nodes", "0"],
        &["-n", "x"],
        &["--bogus"],
        &["--crash", "3"],
        &["--completions", "tcsh"],
        &["--schedule", "laplacian:2", "--topology", "ring"],
        &["--np", "8", "--topology", "ring"],
        &["--drop", "1.5"],
        &["--crash", "99@1", "--np", "8"],
        &["--freeze", "2@5..3", "--np", "8"],
        &["--cut", "0-0@1..2", "--np", "8"],
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
        "--np",
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
        "--np",
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

/// The long options an option list names: the first `--name` of each line
/// that starts (after at most 8 spaces: not a description) with `-`,
/// without `--help` and `--version`.
fn help_options(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter(|line| {
            let option = line.trim_start();
            option.starts_with('-') && line.len() - option.len() <= 8
        })
        .filter_map(|line| {
            line.split([' ', ',', '='])
                .find(|word| word.starts_with("--") && word.len() > 2)
        })
        .filter(|option| !["--help", "--version"].contains(option))
        .map(String::from)
        .collect()
}

/// Every `--name` in the first column of the first table after the line
/// `heading` of the README.
fn readme_table_options(heading: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read the README");
    let (_, section) = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no {heading:?}"));
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the separator
        .collect();
    assert!(!rows.is_empty(), "no option table after {heading:?}");
    rows.iter()
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| {
            cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|word| word.starts_with("--") && word.len() > 2)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every option of `simulate`, as `--help` must list it.
const SIMULATE_OPTIONS: [&str; 26] = [
    "--np",
    "--topology",
    "--edges",
    "--schedule",
    "--dim",
    "--tol",
    "--max-rounds",
    "--drop",
    "--duplicate",
    "--delay",
    "--crash",
    "--leave",
    "--change",
    "--detect",
    "--cut",
    "--cut-oneway",
    "--isolate",
    "--freeze",
    "--suspect",
    "--suspect-after",
    "--scale",
    "--seed",
    "--trace",
    "--json",
    "--completions",
    "--help",
];

#[test]
fn help_lists_every_option_with_its_default_and_the_exit_statuses() {
    for flag in ["--help", "-h"] {
        let (code, stdout, stderr) = simulate(&[flag]);
        assert_eq!(code, 0, "{flag}: {stderr}");
        assert!(stderr.is_empty(), "{flag}: {stderr}");
        for option in SIMULATE_OPTIONS {
            assert!(
                stdout.contains(option),
                "{flag}: {option} missing:\n{stdout}"
            );
        }
        assert!(stdout.contains("-n, --np <N>"), "{stdout}");
        for default in [
            "[default: 64]",
            "[default: exponential]",
            "[default: 1e-12]",
        ] {
            assert!(stdout.contains(default), "{flag}: {default} missing");
        }
        let statuses = stdout
            .split("Exit status:")
            .nth(1)
            .expect("the exit statuses");
        for code in ["0", "1", "2"] {
            assert!(
                statuses.lines().any(|l| l.trim_start().starts_with(code)),
                "{flag}: status {code} missing"
            );
        }
    }
    let (_, stdout, _) = simulate(&["--help"]);
    let expected: BTreeSet<String> = SIMULATE_OPTIONS[..SIMULATE_OPTIONS.len() - 1]
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(help_options(&stdout), expected);
    let (code, stdout, _) = simulate(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("simulate "), "{stdout}");
}

/// The README's option table lists exactly the options `--help` lists.
#[test]
fn the_readme_table_lists_exactly_the_options_of_help() {
    let (code, help, _) = simulate(&["--help"]);
    assert_eq!(code, 0);
    let in_help = help_options(&help);
    let in_readme = readme_table_options("## The `simulate` program");
    assert_eq!(
        in_readme, in_help,
        "README table (left) and simulate --help (right) differ"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_options() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, stderr) = simulate(&["--completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains("simulate"), "{shell}");
        for option in ["np", "topology", "suspect-after", "cut-oneway", "json"] {
            assert!(stdout.contains(option), "{shell}: {option} missing");
        }
    }
}

/// The old spelling `--nodes` still works (as a hidden alias of `--np`),
/// and `-n` is the short one.
#[test]
fn the_member_count_takes_every_spelling() {
    for flag in ["-n", "--np", "--nodes"] {
        let (code, stdout, stderr) = simulate(&[flag, "8", "--json"]);
        assert_eq!(code, 0, "{flag}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["nodes"], 8, "{flag}");
    }
    let (_, help, _) = simulate(&["--help"]);
    assert!(!help.contains("--nodes"), "the alias is hidden");
}
