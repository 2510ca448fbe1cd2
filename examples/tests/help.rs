//! Every example program answers `--help` (exit 0, every option and the
//! exit statuses) without joining a job, and refuses a bad argument with
//! one line and exit status 2.
// Helpers of tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

/// Each program and the options and arguments its help must name.
const PROGRAMS: &[(&str, &[&str])] = &[
    (
        env!("CARGO_BIN_EXE_dot"),
        &["[LENGTH]", "[default: 1000003]"],
    ),
    (
        env!("CARGO_BIN_EXE_matvec"),
        &["[ROWS]", "[COLS]", "[default: 300]", "[default: 500]"],
    ),
    (env!("CARGO_BIN_EXE_lstsq"), &["[CSV]", "diabetes.csv"]),
    (env!("CARGO_BIN_EXE_bayes"), &["No arguments"]),
    (
        env!("CARGO_BIN_EXE_cg"),
        &["[GRID]", "--checkpoint <DIR>", "[default: 24]"],
    ),
    (
        env!("CARGO_BIN_EXE_fault_tolerant_lstsq"),
        &[
            "--partitions <P>",
            "--replicas <R>",
            "--fits <N>",
            "--kill-rank <K>",
            "--kill-after-ms <T>",
            "--cheat-rank <K>",
            "--allow-degraded",
            "--data <CSV>",
        ],
    ),
];

#[test]
fn every_example_answers_help_without_a_job() {
    for (program, names) in PROGRAMS {
        // No DAC_* variables: --help must not try to join a job.
        let out = Command::new(program)
            .arg("--help")
            .env_remove("DAC_RANK")
            .env_remove("DAC_SIZE")
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{program}: {help}");
        for name in names
            .iter()
            .chain(&["Exit status: 0", "MISMATCH", "--help"])
        {
            assert!(
                help.contains(name),
                "{program} --help lacks {name:?}:\n{help}"
            );
        }
    }
}

#[test]
fn a_bad_argument_is_one_line_and_exit_2() {
    let cases: &[(&str, &[&str], &str)] = &[
        (env!("CARGO_BIN_EXE_dot"), &["ten"], "invalid value 'ten'"),
        (env!("CARGO_BIN_EXE_matvec"), &["3"], "<COLS>"),
        (env!("CARGO_BIN_EXE_cg"), &["0"], "0 is not in 1..=65535"),
        (
            env!("CARGO_BIN_EXE_cg"),
            &["--checkpoint"],
            "a value is required",
        ),
        (
            env!("CARGO_BIN_EXE_bayes"),
            &["extra"],
            "unexpected argument 'extra'",
        ),
        (
            env!("CARGO_BIN_EXE_fault_tolerant_lstsq"),
            &["--kill-rank", "2"],
            "--kill-after-ms",
        ),
        (
            env!("CARGO_BIN_EXE_fault_tolerant_lstsq"),
            &["--fits", "many"],
            "--fits <N>",
        ),
    ];
    for (program, args, wanted) in cases {
        let out = Command::new(program).args(*args).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{program} {args:?}: {err}");
        assert!(err.contains(wanted), "{program} {args:?}: {err}");
        assert!(out.stdout.is_empty(), "{program} {args:?}");
    }
}
