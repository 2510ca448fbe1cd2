//! The bench programs' command lines: `--help` lists every option and exits
//! 0, argument errors are one line with exit status 2, and the old
//! positional forms still work.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

/// Runs `program args`; (status, stdout, stderr).
fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
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

const PROGRAMS: [(&str, &str, &[&str]); 4] = [
    (
        "net_bench",
        env!("CARGO_BIN_EXE_net_bench"),
        &["--np", "--dim"],
    ),
    (
        "key_bench",
        env!("CARGO_BIN_EXE_key_bench"),
        &["--np", "--dim", "--alternations", "--old"],
    ),
    (
        "sim_scale",
        env!("CARGO_BIN_EXE_sim_scale"),
        &["--np", "--rounds"],
    ),
    (
        "cipher_bench",
        env!("CARGO_BIN_EXE_cipher_bench"),
        &["--rounds"],
    ),
];

#[test]
fn help_lists_every_option_and_the_exit_statuses() {
    for (name, program, options) in PROGRAMS {
        for flag in ["-h", "--help"] {
            let (code, stdout, stderr) = run(program, &[flag]);
            assert_eq!(code, 0, "{name} {flag}: {stderr}");
            assert!(stderr.is_empty(), "{name} {flag}: {stderr}");
            for option in options {
                assert!(stdout.contains(option), "{name} {flag}: {option} missing");
            }
            assert!(stdout.contains("[default: "), "{name} {flag}: no default");
            assert!(stdout.contains("Exit status:"), "{name} {flag}");
        }
        let (_, help, _) = run(program, &["--help"]);
        let expected: BTreeSet<String> = options.iter().map(|o| o.to_string()).collect();
        assert_eq!(help_options(&help), expected, "{name} --help");
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: [(&str, &[&str]); 9] = [
        ("net_bench", &["-n", "2,x"]),
        ("net_bench", &["--dim", "0"]),
        ("net_bench", &["4", "-n", "4"]),
        ("key_bench", &["--alternations", "0"]),
        ("key_bench", &["8", "0"]),
        ("sim_scale", &["-n", "0"]),
        ("sim_scale", &["--rounds", "x"]),
        ("sim_scale", &["--bogus"]),
        ("cipher_bench", &["--rounds", "0"]),
    ];
    for (name, args) in cases {
        let program = PROGRAMS
            .iter()
            .find(|p| p.0 == name)
            .expect("a known program")
            .1;
        let (code, stdout, stderr) = run(program, args);
        assert_eq!(code, 2, "{name} {args:?}: {stderr}");
        assert!(stdout.is_empty(), "{name} {args:?}");
        assert!(stderr.starts_with(&format!("{name}: ")), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name} {args:?}: {stderr}");
    }
}

/// `sim_scale -n N --rounds R` and the old `sim_scale N R` run the same.
#[test]
fn sim_scale_takes_options_and_the_old_positional_form() {
    for args in [&["-n", "1000", "--rounds", "2"][..], &["1000", "2"]] {
        let (code, stdout, stderr) = run(env!("CARGO_BIN_EXE_sim_scale"), args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stdout.starts_with("members: 1000 ") && stdout.contains("rounds: 2 "),
            "{args:?}: {stdout}"
        );
    }
}
