//! `--help` of `dacrun` and `dac-allreduce`: every option listed, exit
//! status 0; the README's dacrun option table matches `dacrun --help`; the
//! shell completions name dacrun's options.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

const DACRUN: &str = env!("CARGO_BIN_EXE_dacrun");
const ALLREDUCE: &str = env!("CARGO_BIN_EXE_dac-allreduce");

/// Runs `program args` without a job environment; (status, stdout, stderr).
fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .env_remove("DAC_RANK")
        .env_remove("DAC_SIZE")
        .stdin(Stdio::null())
        .output()
        .expect("the program runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// `--help` and `-h` exit 0 with nothing on stderr, and list every option
/// in `options` (and exactly those, in `--help`).
fn check_help(program: &str, options: &[&str]) -> String {
    for flag in ["-h", "--help"] {
        let (code, stdout, stderr) = run(program, &[flag]);
        assert_eq!(code, 0, "{program} {flag}: {stderr}");
        assert!(stderr.is_empty(), "{program} {flag}: {stderr}");
        for option in options {
            assert!(
                stdout.contains(option),
                "{program} {flag}: {option} missing:\n{stdout}"
            );
        }
    }
    let (_, help, _) = run(program, &["--help"]);
    let expected: BTreeSet<String> = options.iter().map(|o| o.to_string()).collect();
    assert_eq!(help_options(&help), expected, "{program} --help");
    help
}

const DACRUN_OPTIONS: [&str; 10] = [
    "--np",
    "--topology",
    "--schedule",
    "--timeout",
    "--peer-timeout",
    "--key-file",
    "--join",
    "--keep-going",
    "--peer-id",
    "--completions",
];

#[test]
fn dacrun_help_lists_every_option_and_what_it_passes_on() {
    let help = check_help(DACRUN, &DACRUN_OPTIONS);
    assert!(help.contains("-n, --np <N>"), "{help}");
    for variable in [
        "DAC_TOPOLOGY",
        "DAC_SCHEDULE",
        "DAC_PEER_TIMEOUT",
        "DAC_KEY_FILE",
        "DAC_RANK",
        "DAC_SIZE",
        "DAC_JOIN",
        "DAC_RUN_DIR",
    ] {
        assert!(help.contains(variable), "{variable} missing:\n{help}");
    }
    assert!(
        !help.contains("guard-for-dacrun"),
        "the internal mode is hidden"
    );
    let (code, stdout, _) = run(DACRUN, &["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("dacrun "), "{stdout}");
}

#[test]
fn dac_allreduce_help_lists_every_option_and_the_exit_statuses() {
    let mut options = vec![
        "--dim",
        "--reps",
        "--warmup",
        "--sum",
        "--pause-ms",
        "--kill-rank",
        "--kill-after-ms",
        "--quiet",
        "--until-ms",
        "--admit",
    ];
    if cfg!(feature = "testing") {
        options.push("--misbehave");
    }
    let help = check_help(ALLREDUCE, &options);
    for default in ["[default: 1]", "[default: 10]", "[default: 2]"] {
        assert!(help.contains(default), "{default} missing:\n{help}");
    }
    assert!(help.contains("DAC_RANK"), "{help}");
    let statuses = help
        .split("Exit status:")
        .nth(1)
        .expect("the exit statuses");
    for code in ["0", "1", "2"] {
        assert!(
            statuses.lines().any(|l| l.trim_start().starts_with(code)),
            "status {code} missing:\n{help}"
        );
    }
}

/// Argument errors of dac-allreduce: one line, exit status 2, before any
/// job is looked for.
#[test]
fn dac_allreduce_bad_arguments_exit_2_with_one_line() {
    for args in [
        &["--dim", "0"][..],
        &["--reps", "x"],
        &["--kill-rank", "1"],
        &["--bogus"],
    ] {
        let (code, stdout, stderr) = run(ALLREDUCE, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        assert!(stderr.starts_with("dac-allreduce: "), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// The README's dacrun option table lists exactly the options `dacrun
/// --help` lists.
#[test]
fn the_readme_dacrun_table_lists_exactly_the_options_of_help() {
    let (code, help, _) = run(DACRUN, &["--help"]);
    assert_eq!(code, 0);
    let in_readme = readme_table_options("## Networked jobs (`dac-net`)");
    assert_eq!(
        in_readme,
        help_options(&help),
        "README table (left) and dacrun --help (right) differ"
    );
}

#[test]
fn dacrun_completions_for_bash_zsh_and_fish_name_the_options() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, stdout, stderr) = run(DACRUN, &["--completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains("dacrun"), "{shell}");
        for option in DACRUN_OPTIONS {
            assert!(
                stdout.contains(option.trim_start_matches('-')),
                "{shell}: {option} missing"
            );
        }
        assert!(!stdout.contains("guard-for-dacrun"), "{shell}");
    }
    let (code, stdout, stderr) = run(DACRUN, &["--completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("possible values: bash"), "{stderr}");
}
