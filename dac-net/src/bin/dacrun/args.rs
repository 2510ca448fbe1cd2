//! The `dacrun` command line, parsed by clap and checked before anything starts.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueHint};
use clap_complete::Shell;
use dac_core::cli::one_line;
use dac_core::{Schedule, Topology};

/// What `--help` prints after the options.
const AFTER_HELP: &str = "\
Every rank gets DAC_RANK (0..N) and DAC_SIZE (N), or with --join DAC_JOIN
instead, DAC_RUN_DIR (a fresh directory
that dacrun removes at the end, with everything in it) and DAC_KEY_FILE; it
gets DAC_TOPOLOGY, DAC_SCHEDULE and DAC_PEER_TIMEOUT only from the options
above (values inherited from dacrun's environment are removed, and so is
DAC_JOB_KEY). dacrun itself reads none of these variables. Ranks get no stdin.
Each rank runs in a process group of its own, killed as a whole: nothing a
rank starts outlives the job, even if dacrun itself is killed.

Exit status:
  0            every rank exited 0
  S            the first rank that failed exited with S (the others are killed)
  128+K        that rank was killed by signal K
  124          --timeout expired
  130/143/129  dacrun got SIGINT / SIGTERM / SIGHUP
  127 / 126    PROGRAM not found / not runnable
  2            bad arguments, or more ranks than the open-file limit allows
               (nothing started)
  125          dacrun itself failed (also --peer-id on a file it cannot make)
With --keep-going: the first non-zero exit status of a rank, or 0 (ranks
killed by a signal do not fail the job); a timeout or a signal to dacrun
still stops everything, with the status above.";

/// The command line as clap reads it.
#[derive(Debug, Parser)]
#[command(
    name = "dacrun",
    version,
    about = "Starts N copies of a program as the ranks of one dac job, like mpirun.",
    long_about = "Starts N copies of PROGRAM (ranks 0..N), prefixes every line they print with \
                  '[RANK] ', and stops them all when one fails. The program is the first word \
                  that is not one of the options below (or the word after '--'); it and \
                  everything after it are passed to it untouched, even words that look like \
                  dacrun's options: `dacrun -n 4 python fit.py -n 5` gives `-n 5` to fit.py.",
    override_usage = "dacrun -n N [OPTIONS] [--] PROGRAM [ARGS]...\n       \
                      dacrun --peer-id FILE\n       \
                      dacrun --completions SHELL",
    help_template = "usage: {usage}\n\n{about-with-newline}\n{all-args}{after-help}",
    after_help = AFTER_HELP,
    args_override_self = true
)]
struct Cli {
    /// Number of ranks to start, at least 1 (required to run a job).
    #[arg(
        short = 'n',
        long = "np",
        value_name = "N",
        value_parser = parse_size,
        required_unless_present_any = ["peer_id", "completions"]
    )]
    np: Option<usize>,

    /// The ranks' graph, passed on as DAC_TOPOLOGY [default: the ranks' own, exponential].
    ///
    /// One of complete, ring, torus, torus:RxC, random-regular:K, exponential,
    /// hypercube or an edge list edges:A-B,C-D,... dacrun checks the name and
    /// gives it, as typed, to every rank in DAC_TOPOLOGY; without this option
    /// DAC_TOPOLOGY is unset and the ranks use exponential.
    #[arg(long, value_name = "T", value_parser = parse_topology)]
    topology: Option<String>,

    /// The consensus schedule, passed on as DAC_SCHEDULE [default: the ranks' own, exact or metropolis].
    ///
    /// One of laplacian:EPS (0 < EPS < 1 / the largest degree), metropolis or
    /// exact. dacrun checks the name and gives it, as typed, to every rank in
    /// DAC_SCHEDULE; without this option DAC_SCHEDULE is unset and the ranks
    /// use exact when the topology contains its pairs (exponential and
    /// complete do), metropolis otherwise.
    #[arg(long, value_name = "S", value_parser = parse_schedule)]
    schedule: Option<String>,

    /// Kill every rank after SECS seconds and exit 124 [default: no limit].
    ///
    /// A wall-clock limit for the whole job: a positive number of seconds,
    /// fractions allowed.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_seconds,
        allow_negative_numbers = true
    )]
    timeout: Option<Seconds>,

    /// Seconds before a silent peer counts as gone, passed on as DAC_PEER_TIMEOUT [default: the ranks' own, 10].
    ///
    /// A positive number of seconds, fractions allowed, given as typed to
    /// every rank in DAC_PEER_TIMEOUT; dacrun itself does not use it. Without
    /// this option DAC_PEER_TIMEOUT is unset and the ranks use 10 s.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_seconds,
        allow_negative_numbers = true
    )]
    peer_timeout: Option<Seconds>,

    /// The job key, passed on as DAC_KEY_FILE [default: a fresh key per job].
    ///
    /// A file of 64 hex digits. dacrun checks that it reads as a key and gives
    /// its absolute path to every rank in DAC_KEY_FILE. Without this option
    /// dacrun writes a fresh random key to DAC_RUN_DIR/job.key (mode 0600),
    /// says so on stderr, and removes it with the run directory.
    #[arg(
        long,
        value_name = "FILE",
        value_parser = check_key_file,
        value_hint = ValueHint::FilePath
    )]
    key_file: Option<PathBuf>,

    /// Start processes that join the running job at ADDR instead of forming a new one.
    ///
    /// ADDR is a member's address as `Comm::address` prints it
    /// (/ip4/…/tcp/…/p2p/…), or several separated by commas; any member of
    /// the job will do. Each of the N processes gets DAC_JOIN=ADDR (and no
    /// DAC_RANK or DAC_SIZE: it gets its rank when it is admitted, at the
    /// job's next reduction boundary), and its output lines are prefixed
    /// with its index in this dacrun. A private job's key must be passed
    /// with --key-file (the first dacrun prints where its key is); without
    /// it no key is made, and a keyed job refuses the joiners, saying so.
    #[arg(long, value_name = "ADDR", value_parser = parse_join)]
    join: Option<String>,
    /// A rank that dies does not stop the others.
    ///
    /// A rank that exits non-zero or is killed is reported ("...;
    /// continuing") and the others run on; dacrun then exits with the first
    /// non-zero exit status of a rank, or 0 (ranks killed by a signal do not
    /// fail the job). Without it the first rank that fails stops the job.
    #[arg(long)]
    keep_going: bool,

    /// Print the peer id of the identity file FILE, making it if absent, and exit.
    ///
    /// For DAC_IDENTITY_FILE and allow-lists (DAC_ALLOW_PEERS): a new file is
    /// readable by its owner only (mode 0600), and the same file always gives
    /// the same peer id. Takes no other option.
    #[arg(
        long,
        value_name = "FILE",
        exclusive = true,
        value_hint = ValueHint::FilePath
    )]
    peer_id: Option<PathBuf>,

    /// Print a completion script for SHELL on stdout, and exit.
    ///
    /// For example `dacrun --completions bash >
    /// ~/.local/share/bash-completion/completions/dacrun`, or `--completions
    /// zsh` into a directory of your $fpath as `_dacrun`. Takes no other
    /// option.
    #[arg(long, value_name = "SHELL", value_enum, exclusive = true)]
    completions: Option<Shell>,

    /// The program every rank runs, then its arguments, passed through
    /// untouched.
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        num_args = 1..,
        required_unless_present_any = ["peer_id", "completions"],
        value_hint = ValueHint::CommandWithArguments
    )]
    command: Vec<OsString>,
}

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
    /// `--join`: members' addresses, already checked.
    pub(crate) join: Option<String>,
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
    /// Print the peer id of an identity file (created if absent).
    PeerId(PathBuf),
    /// Print a completion script.
    Completions(Shell),
    /// Be the guard of the job whose run directory this is: the internal
    /// mode `dacrun --guard-for-dacrun RUN_DIR`, recognised before clap so
    /// that neither `--help` nor the completions show it.
    Guard(PathBuf),
}

/// The internal mode's flag (see [`Command::Guard`]).
pub(crate) const GUARD_FLAG: &str = "--guard-for-dacrun";

/// An argument error, or a request for `--help` or `--version`.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// clap's verdict: help, version or a usage error.
    Clap(clap::Error),
    /// A problem clap does not check, as one line.
    Invalid(String),
}

impl Refusal {
    /// Prints help or version on stdout (exit status 0), or the error as one
    /// line `dacrun: …` on stderr (exit status 2); returns the status.
    pub(crate) fn report(&self) -> u8 {
        match self {
            Refusal::Clap(e) if !e.use_stderr() => {
                // `--help` or `--version`: a closed stdout has no one to tell.
                let _ = e.print();
                0
            }
            Refusal::Clap(e) => {
                eprintln!("dacrun: {}", one_line(e));
                crate::EXIT_USAGE
            }
            Refusal::Invalid(message) => {
                eprintln!("dacrun: {message} (see --help)");
                crate::EXIT_USAGE
            }
        }
    }
}

/// Parses the whole command line, program name first.
///
/// # Errors
///
/// A [`Refusal`]: help or version asked for, or what is wrong.
pub(crate) fn parse_args<I, T>(argv: I) -> Result<Command, Refusal>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    if let [_, flag, run_dir] = argv.as_slice()
        && flag == GUARD_FLAG
    {
        return Ok(Command::Guard(PathBuf::from(run_dir)));
    }
    let cli = Cli::try_parse_from(argv).map_err(Refusal::Clap)?;
    if let Some(path) = cli.peer_id {
        return Ok(Command::PeerId(path));
    }
    if let Some(shell) = cli.completions {
        return Ok(Command::Completions(shell));
    }
    let missing = || Refusal::Invalid("missing -n N or the program to run".into());
    let size = cli.np.ok_or_else(missing)?;
    let mut command = cli.command.into_iter();
    let program = command.next().ok_or_else(missing)?;
    if program.is_empty() {
        return Err(Refusal::Invalid("the program name is empty".into()));
    }
    Ok(Command::Run(Box::new(Args {
        size,
        topology: cli.topology,
        schedule: cli.schedule,
        timeout: cli.timeout,
        peer_timeout: cli.peer_timeout,
        key_file: cli.key_file,
        join: cli.join,
        keep_going: cli.keep_going,
        program,
        program_args: command.collect(),
    })))
}

/// The completion script for `shell`.
pub(crate) fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dacrun", &mut script);
    script
}
/// Checks `--join`: multiaddrs separated by commas.
fn parse_join(value: &str) -> Result<String, String> {
    for addr in value.split(',') {
        addr.trim().parse::<dac_net::Multiaddr>().map_err(|e| {
            format!("{addr:?} is not an address like /ip4/10.0.0.1/tcp/7000/p2p/…: {e}")
        })?;
    }
    Ok(value.to_string())
}

/// Parses the number of ranks.
fn parse_size(value: &str) -> Result<usize, String> {
    let size: usize = value
        .parse()
        .map_err(|_| "expects a positive integer".to_string())?;
    if size == 0 {
        return Err("must be at least 1".into());
    }
    Ok(size)
}

/// Checks a topology name, keeping it as typed.
fn parse_topology(value: &str) -> Result<String, String> {
    value.parse::<Topology>().map_err(|e| e.to_string())?;
    Ok(value.to_string())
}

/// Checks a schedule name, keeping it as typed.
fn parse_schedule(value: &str) -> Result<String, String> {
    value.parse::<Schedule>().map_err(|e| e.to_string())?;
    Ok(value.to_string())
}

/// Parses a positive, finite number of seconds that fits a [`Duration`].
fn parse_seconds(value: &str) -> Result<Seconds, String> {
    let invalid = || "expects a positive number of seconds".to_string();
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
fn check_key_file(value: &str) -> Result<PathBuf, String> {
    let path = Path::new(value);
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

/// The program name for messages.
pub(crate) fn shown(program: &OsStr) -> String {
    program.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, Refusal> {
        parse_args(std::iter::once("dacrun").chain(s.split_whitespace()))
    }

    fn run(s: &str) -> Args {
        match parse(s) {
            Ok(Command::Run(args)) => *args,
            other => panic!("expected a run for {s:?}, got {other:?}"),
        }
    }

    /// The one-line message of a refused command line.
    fn refused(s: &str) -> String {
        match parse(s) {
            Err(Refusal::Clap(e)) if e.use_stderr() => one_line(&e),
            Err(Refusal::Invalid(message)) => message,
            other => panic!("expected an error for {s:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
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

    /// A repeated option: the last one counts, as before.
    #[test]
    fn the_last_of_a_repeated_option_wins() {
        assert_eq!(run("-n 2 -n 3 prog").size, 3);
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
        let args = run("-n 2 prog --help --keep-going -- x");
        assert!(!args.keep_going);
        assert_eq!(args.program_args, ["--help", "--keep-going", "--", "x"]);
    }

    /// After `--` even a program whose name starts with a dash is the program.
    #[test]
    fn everything_after_the_separator_is_the_program() {
        let args = run("-n 1 -- --odd-name -- -n");
        assert_eq!(args.program, "--odd-name");
        assert_eq!(args.program_args, ["--", "-n"]);
    }

    #[test]
    fn help_wins() {
        for line in ["-n 2 --help", "-h", "--help -n 0"] {
            match parse(line) {
                Err(Refusal::Clap(e)) => {
                    assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{line}");
                }
                other => panic!("{line}: expected help, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_other_modes() {
        assert_eq!(
            parse("--peer-id id.key").ok(),
            Some(Command::PeerId("id.key".into()))
        );
        assert_eq!(
            parse("--completions zsh").ok(),
            Some(Command::Completions(Shell::Zsh))
        );
        assert_eq!(
            parse("--guard-for-dacrun /tmp/x").ok(),
            Some(Command::Guard("/tmp/x".into()))
        );
    }

    #[test]
    fn completions_name_the_options() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completions(shell)).expect("a UTF-8 script");
            for option in ["--np", "--topology", "--keep-going", "--peer-id"] {
                let name = if shell == Shell::Fish {
                    option.trim_start_matches('-')
                } else {
                    option
                };
                assert!(script.contains(name), "{shell}: {option} missing");
            }
            assert!(!script.contains(GUARD_FLAG), "{shell}");
        }
    }

    #[test]
    fn bad_command_lines_name_the_problem() {
        let cases = [
            ("-n 0 -- prog", "at least 1"),
            ("-n x -- prog", "positive integer"),
            ("-n", "a value is required for '--np <N>'"),
            ("-- prog", "--np <N>"),
            ("-n 2", "<PROGRAM>"),
            ("prog", "--np <N>"),
            ("-n 2 --", "<PROGRAM>"),
            ("-n 2 --bogus -- prog", "unexpected argument '--bogus'"),
            (
                "-n 2 --topolgy ring -- prog",
                "similar argument exists: '--topology'",
            ),
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
            ("--peer-id f -n 2 prog", "cannot be used with"),
            ("--completions tcsh", "invalid value 'tcsh'"),
        ];
        for (line, expected) in cases {
            let err = refused(line);
            assert!(err.contains(expected), "{line:?}: {err:?}");
            assert!(!err.contains('\n'), "{line:?}: {err:?}");
        }
    }
}
