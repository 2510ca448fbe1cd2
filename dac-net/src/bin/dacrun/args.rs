//! The `dacrun` command line: parsed by hand and checked before anything starts.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dac_core::{Schedule, Topology};

/// The text `--help` prints.
pub(crate) const USAGE: &str = "\
usage: dacrun -n N [options] [--] PROGRAM [ARGS...]
       dacrun --peer-id FILE

Starts N copies of PROGRAM (ranks 0..N), prefixes every line they print with
'[RANK] ', and stops them all when one fails. The program is the first word
that is not an option (or the word after '--'); it and everything after it
are passed through untouched.

  -n N, --np N          number of ranks (at least 1)
  --topology T          complete | ring | torus | torus:RxC | random-regular:K |
                        exponential | hypercube (passed on as DAC_TOPOLOGY)
  --schedule S          laplacian:EPS | metropolis | exact (passed on as DAC_SCHEDULE)
  --timeout SECS        kill every rank after SECS seconds and exit 124
  --peer-timeout SECS   seconds before a silent peer counts as gone
                        (passed on as DAC_PEER_TIMEOUT)
  --key-file F          the job key (passed on as DAC_KEY_FILE, an absolute
                        path); without it dacrun makes a fresh key per job
  --keep-going          a rank that dies does not stop the others; exit with
                        the first non-zero exit status, signal deaths aside
  -h, --help            print this help
  --peer-id FILE        print the peer id of the identity file FILE (made if
                        absent; see DAC_IDENTITY_FILE) and exit

Every rank gets DAC_RANK, DAC_SIZE, DAC_RUN_DIR (a fresh directory that
dacrun removes at the end) and DAC_KEY_FILE. Each rank runs in a process
group of its own, killed as a whole: nothing a rank starts outlives the job,
even if dacrun itself is killed.

Exit status:
  0          every rank exited 0
  S          the first rank that failed exited with S (the others are killed)
  128+K      that rank was killed by signal K
  124        --timeout expired
  130/143/129  dacrun got SIGINT / SIGTERM / SIGHUP
  127 / 126  PROGRAM not found / not runnable
  2          bad arguments (nothing started)
  125        dacrun itself failed";

/// A positive number of seconds, kept as typed so it reaches the ranks and
/// the messages unchanged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seconds {
    /// The value as given on the command line.
    pub(crate) text: String,
    /// The same value as a duration, for dacrun's own timers.
    pub(crate) duration: Duration,
}

/// What to launch and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Args {
    /// Number of ranks to start.
    pub(crate) size: usize,
    /// `--topology`, already checked to be a name [`Topology`] accepts.
    pub(crate) topology: Option<String>,
    /// `--schedule`, already checked to be a name [`Schedule`] accepts.
    pub(crate) schedule: Option<String>,
    /// Wall-clock limit for the whole job.
    pub(crate) timeout: Option<Seconds>,
    /// Passed on to the ranks; dacrun itself does not use it.
    pub(crate) peer_timeout: Option<Seconds>,
    /// Absolute path of a readable key file.
    pub(crate) key_file: Option<PathBuf>,
    /// Whether a failing rank leaves the others running.
    pub(crate) keep_going: bool,
    /// The program every rank runs.
    pub(crate) program: OsString,
    /// Its arguments, passed through untouched.
    pub(crate) program_args: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    /// Launch a job.
    Run(Box<Args>),
    /// Print [`USAGE`].
    Help,
    /// Print the peer id of an identity file (created if absent).
    PeerId(PathBuf),
}

/// Options seen so far, before `--`.
#[derive(Debug, Default)]
struct Options {
    size: Option<usize>,
    topology: Option<String>,
    schedule: Option<String>,
    timeout: Option<Seconds>,
    peer_timeout: Option<Seconds>,
    key_file: Option<PathBuf>,
    keep_going: bool,
}

/// Parses everything after the program name.
///
/// # Errors
///
/// A one-line message (without the `dacrun: ` prefix) for the first problem.
pub(crate) fn parse_args(argv: &[OsString]) -> Result<Command, String> {
    let mut options = Options::default();
    let mut i = 0;
    while i < argv.len() {
        let word = argv[i]
            .to_str()
            .ok_or_else(|| format!("argument {:?} is not valid UTF-8", argv[i]))?;
        i += 1;
        if word == "--" {
            return finish(options, &argv[i..]).map(|args| Command::Run(Box::new(args)));
        }
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (word, None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--peer-id" => {
                let path = match inline {
                    Some(value) => OsString::from(value),
                    None => argv.get(i).cloned().ok_or("--peer-id expects a file")?,
                };
                return Ok(Command::PeerId(PathBuf::from(path)));
            }
            "--keep-going" => {
                options.keep_going = true;
                continue;
            }
            "-n" | "--np" | "--topology" | "--schedule" | "--timeout" | "--peer-timeout"
            | "--key-file" => {}
            _ if flag.starts_with('-') => {
                return Err(format!("unknown option '{flag}' (see --help)"));
            }
            // The program, as mpirun takes it: the first word that is not
            // an option; everything from it on is passed through.
            _ => {
                return finish(options, &argv[i - 1..]).map(|args| Command::Run(Box::new(args)));
            }
        }
        let value = match inline {
            Some(value) => value,
            None => {
                let value = argv
                    .get(i)
                    .ok_or_else(|| format!("{flag} expects a value"))?;
                i += 1;
                value
                    .to_str()
                    .ok_or_else(|| format!("{flag} value {value:?} is not valid UTF-8"))?
            }
        };
        set_option(&mut options, flag, value)?;
    }
    Err("missing the program to run (see --help)".into())
}

/// Checks one option's value and records it.
fn set_option(options: &mut Options, flag: &str, value: &str) -> Result<(), String> {
    match flag {
        "-n" | "--np" => options.size = Some(parse_size(flag, value)?),
        "--topology" => {
            value.parse::<Topology>().map_err(|e| e.to_string())?;
            options.topology = Some(value.to_string());
        }
        "--schedule" => {
            value.parse::<Schedule>().map_err(|e| e.to_string())?;
            options.schedule = Some(value.to_string());
        }
        "--timeout" => options.timeout = Some(parse_seconds(flag, value)?),
        "--peer-timeout" => options.peer_timeout = Some(parse_seconds(flag, value)?),
        _ => options.key_file = Some(check_key_file(Path::new(value))?),
    }
    Ok(())
}

/// Parses the number of ranks.
fn parse_size(flag: &str, value: &str) -> Result<usize, String> {
    let size: usize = value
        .parse()
        .map_err(|_| format!("{flag} expects a positive integer, got '{value}'"))?;
    if size == 0 {
        return Err(format!("{flag} must be at least 1"));
    }
    Ok(size)
}

/// Parses a positive, finite number of seconds that fits a [`Duration`].
fn parse_seconds(flag: &str, value: &str) -> Result<Seconds, String> {
    let invalid = || format!("{flag} expects a positive number of seconds, got '{value}'");
    let secs: f64 = value.parse().map_err(|_| invalid())?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(invalid());
    }
    let duration = Duration::try_from_secs_f64(secs).map_err(|_| invalid())?;
    Ok(Seconds {
        text: value.to_string(),
        duration,
    })
}

/// Checks that the key file can be read and returns its absolute path.
fn check_key_file(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read key file {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read key file {shown}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("key file {shown} is a directory"));
    }
    dac_net::JobKey::read(path).map_err(|e| e.to_string())?;
    std::path::absolute(path).map_err(|e| format!("cannot resolve key file {shown}: {e}"))
}

/// Builds [`Args`] once `--` has been seen; `rest` is the program and its arguments.
fn finish(options: Options, rest: &[OsString]) -> Result<Args, String> {
    let size = options
        .size
        .ok_or("missing -n N, the number of ranks (see --help)")?;
    let (program, program_args) = rest
        .split_first()
        .ok_or("missing the program after '--' (see --help)")?;
    if program.is_empty() {
        return Err("the program name after '--' is empty".into());
    }
    Ok(Args {
        size,
        topology: options.topology,
        schedule: options.schedule,
        timeout: options.timeout,
        peer_timeout: options.peer_timeout,
        key_file: options.key_file,
        keep_going: options.keep_going,
        program: program.clone(),
        program_args: program_args.to_vec(),
    })
}

/// The program name for messages.
pub(crate) fn shown(program: &OsStr) -> String {
    program.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        let argv: Vec<OsString> = s.split_whitespace().map(OsString::from).collect();
        parse_args(&argv)
    }

    fn run(s: &str) -> Args {
        match parse(s) {
            Ok(Command::Run(args)) => *args,
            other => panic!("expected a run for {s:?}, got {other:?}"),
        }
    }

    #[test]
    fn minimal_command_line() {
        let args = run("-n 4 -- prog a -n b");
        assert_eq!(args.size, 4);
        assert_eq!(args.program, "prog");
        assert_eq!(args.program_args, ["a", "-n", "b"]);
        assert!(!args.keep_going);
        assert_eq!(args.topology, None);
        assert_eq!(args.timeout, None);
    }

    #[test]
    fn every_option_in_both_spellings() {
        let args = run(
            "--np=2 --topology ring --schedule=laplacian:0.1 --timeout 1.5 \
             --peer-timeout=0.25 --keep-going -- prog",
        );
        assert_eq!(args.size, 2);
        assert_eq!(args.topology.as_deref(), Some("ring"));
        assert_eq!(args.schedule.as_deref(), Some("laplacian:0.1"));
        let timeout = args.timeout.expect("a timeout");
        assert_eq!(timeout.text, "1.5");
        assert_eq!(timeout.duration, Duration::from_millis(1500));
        assert_eq!(args.peer_timeout.expect("a peer timeout").text, "0.25");
        assert!(args.keep_going);
    }

    /// The mpirun form: the first word that is not an option is the
    /// program, and everything after it is its own.
    #[test]
    fn the_program_may_come_without_the_separator() {
        let args = run("-n 3 --keep-going python fit.py -n 5 --");
        assert_eq!(args.size, 3);
        assert!(args.keep_going);
        assert_eq!(args.program, "python");
        assert_eq!(args.program_args, ["fit.py", "-n", "5", "--"]);
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse("-n 2 --help"), Ok(Command::Help));
        assert_eq!(parse("-h"), Ok(Command::Help));
    }

    #[test]
    fn bad_command_lines_name_the_problem() {
        let cases = [
            ("-n 0 -- prog", "at least 1"),
            ("-n x -- prog", "positive integer"),
            ("-n", "expects a value"),
            ("-- prog", "missing -n"),
            ("-n 2", "missing the program"),
            ("prog", "missing -n"),
            ("-n 2 --", "missing the program"),
            ("-n 2 --bogus -- prog", "unknown option '--bogus'"),
            ("-n 2 --topology moebius -- prog", "unknown topology"),
            ("-n 2 --schedule fast -- prog", "unknown schedule"),
            ("-n 2 --timeout 0 -- prog", "positive number of seconds"),
            ("-n 2 --timeout nan -- prog", "positive number of seconds"),
            ("-n 2 --timeout 1e300 -- prog", "positive number of seconds"),
            (
                "-n 2 --peer-timeout -1 -- prog",
                "positive number of seconds",
            ),
            (
                "-n 2 --key-file /no/such/key -- prog",
                "cannot read key file",
            ),
            ("-n 2 --key-file / -- prog", "is a directory"),
        ];
        for (line, expected) in cases {
            let err = parse(line).expect_err(line);
            assert!(err.contains(expected), "{line:?}: {err:?}");
            assert!(!err.contains('\n'), "{line:?}: {err:?}");
        }
    }
}
