//! `simulate`: run the consensus engine on a simulated network with faults.
//!
//! ```text
//! simulate -n 1024 --topology exponential --schedule exact --dim 4 \
//!          --tol 1e-12 --drop 0.1 --crash 3@5,17@9 --seed 7 --json
//! simulate -n 16 --schedule metropolis --tol 1e-9 --suspect-after 5 \
//!          --freeze 2@4..40 --cut 0-1@10..30
//! simulate --completions bash > ~/.local/share/bash-completion/completions/simulate
//! ```
//!
//! The command line is parsed by clap; `simulate --help` describes every
//! option with its default. Exit status: 0 when every survivor finished and
//! they agree, 1 when the run did not converge (the report is still
//! printed), 2 for bad arguments (one line on stderr).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, Parser, ValueHint};
use clap_complete::Shell;
use dac_core::cli::one_line;
use dac_core::graph::{SPECTRUM_MAX_NODES, Weights};
use dac_core::sim::{
    self, Cut, Faults, InputChange, MemberOutcome, Report, Span, Suspicion, available_memory,
    memory_needed,
};
use dac_core::{Config, Graph, Schedule, Topology};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// What `--help` prints after the options.
const AFTER_HELP: &str = "\
Members are numbered 0..N. A round is one exchange with every neighbour; a
tick is one step of the simulated clock (without faults a round takes one
tick). A span T1..T2 runs from tick T1 up to, not including, T2; T1.. lasts
for good. Lists may be given in one option (--crash 3@5,17@9) or in several
(--crash 3@5 --crash 17@9).

Exit status:
  0  every survivor finished and they agree (the report is printed)
  1  the run did not converge, or a member failed (the report is printed)
  2  bad arguments: one line on stderr, nothing printed on stdout";

/// The command line.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "simulate",
    version,
    about = "Runs the consensus engine on a simulated network, with message loss, crashes, \
             partitions and other faults, and reports how close every member came to the \
             exact mean.",
    after_help = AFTER_HELP,
    args_override_self = true
)]
struct Args {
    /// Members of the simulated network, at least 1.
    #[arg(
        short = 'n',
        long = "np",
        alias = "nodes",
        value_name = "N",
        default_value_t = 64,
        value_parser = parse_positive, allow_negative_numbers = true)]
    nodes: usize,

    /// The graph: complete, ring, torus, torus:RxC, random-regular:K, exponential or hypercube.
    ///
    /// torus is the most nearly square 2-D torus of N members, torus:RxC one
    /// of R rows and C columns (R C = N); random-regular:K is a K-regular
    /// graph drawn from --seed; exponential links i to i ± 2^k (mod N), a
    /// small diameter, and contains every pair of the exact schedule;
    /// hypercube links i to i xor 2^k and needs N a power of two. An explicit
    /// edge list edges:A-B,C-D,... is accepted too.
    #[arg(
        long,
        value_name = "T",
        default_value = "exponential",
        value_parser = parse_topology,
        conflicts_with = "edges_file"
    )]
    topology: Topology,

    /// Read the graph from FILE instead of --topology.
    ///
    /// One pair of member ids `a b` per line, separated by blanks; empty lines
    /// and lines starting with # are skipped. Every id is below N (--np).
    #[arg(long = "edges", value_name = "FILE", value_hint = ValueHint::FilePath)]
    edges_file: Option<String>,

    /// The schedule: laplacian:EPS, metropolis or exact.
    ///
    /// laplacian:EPS is x_i += EPS sum_j (x_j - x_i), with EPS below 1 / the
    /// largest degree; metropolis weighs each edge 1 / (1 + max(d_i, d_j));
    /// exact (dimension exchange) gives the exact mean in log2 N rounds for
    /// a power of two and floor(log2 N) + 2 otherwise, and needs a graph
    /// that contains its pairs (exponential and complete do, ring does not).
    #[arg(
        long,
        value_name = "S",
        default_value = "exact",
        value_parser = parse_schedule
    )]
    schedule: Schedule,

    /// Length of each member's vector, at least 1.
    #[arg(long, value_name = "D", default_value_t = 1, value_parser = parse_positive, allow_negative_numbers = true)]
    dim: usize,

    /// Target accuracy, in (0, 1): relative to the result's largest entry, absolute when that is below 1.
    ///
    /// A member has converged when D · max_j ‖e_i − e_j‖∞ ≤ tol · max(1,
    /// ‖e_i‖∞) over its neighbours j, D being the diameter bound; this bounds
    /// its distance to the exact mean, and the reported residual is that
    /// bound.
    #[arg(
        long,
        value_name = "T",
        default_value = "1e-12",
        allow_negative_numbers = true
    )]
    tol: f64,

    /// Give up after R rounds (at least 1): the run is then not converged (exit status 1).
    #[arg(
        long,
        value_name = "R",
        default_value_t = 100_000,
        allow_negative_numbers = true
    )]
    max_rounds: u32,

    /// Probability that a message is lost, in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    drop: f64,

    /// Probability that a message is delivered twice, in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    duplicate: f64,

    /// Delay each message by a uniform 0..=K ticks (so messages also arrive out of order).
    #[arg(
        long,
        value_name = "K",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    delay: u32,

    /// Member N crashes silently on reaching round R.
    #[arg(long = "crash", value_name = "N@R,...", value_delimiter = ',', value_parser = parse_events)]
    crashes: Vec<(usize, u32)>,

    /// Member N leaves (says goodbye) on reaching round R.
    #[arg(long = "leave", value_name = "N@R,...", value_delimiter = ',', value_parser = parse_events)]
    leaves: Vec<(usize, u32)>,

    /// Member N gets a new random input on reaching round R.
    #[arg(long = "change", value_name = "N@R,...", value_delimiter = ',', value_parser = parse_events)]
    changes: Vec<(usize, u32)>,

    /// Ticks until a crash or a leave is detected by the neighbours, at least 1.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    detect: u32,

    /// The link between A and B is cut both ways from tick T1 up to T2 (T1..: for good).
    #[arg(long = "cut", value_name = "A-B@T1..T2,...", value_delimiter = ',', value_parser = parse_cuts)]
    cuts: Vec<Cut>,

    /// Messages from A to B (not back) are lost from tick T1 up to T2 (T1..: for good).
    #[arg(long = "cut-oneway", value_name = "A-B@T1..T2,...", value_delimiter = ',', value_parser = parse_oneway_cuts)]
    oneway_cuts: Vec<Cut>,

    /// Every link of member N is cut both ways from tick T1 up to T2 (T1..: for good).
    #[arg(long = "isolate", value_name = "N@T1..T2,...", value_delimiter = ',', value_parser = parse_member_spans)]
    isolations: Vec<(usize, Span)>,

    /// Member N is frozen, as by SIGSTOP, from tick T1 up to T2; messages to it wait (T1..: for good).
    #[arg(long = "freeze", value_name = "N@T1..T2,...", value_delimiter = ',', value_parser = parse_member_spans)]
    freezes: Vec<(usize, Span)>,

    /// At tick T member A suspects member B, which is alive (a false suspicion).
    #[arg(long = "suspect", value_name = "A-B@T,...", value_delimiter = ',', value_parser = parse_suspicions)]
    suspicions: Vec<Suspicion>,

    /// Run the silence-based failure detector: a member suspects a neighbour it has not heard from for K ticks (at least 1) [default: off].
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    suspect_after: Option<u32>,

    /// Inputs are drawn uniformly from [-X, X); X is positive.
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = parse_scale, allow_negative_numbers = true)]
    scale: f64,

    /// Seed of the random topology, the inputs and the faults: the same seed gives the same run.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    seed: u64,

    /// Write the per-round trace to FILE as CSV: round,nodes,max_error,residual,mass_defect.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    trace: Option<String>,

    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,

    /// Print a completion script for SHELL on stdout, and exit.
    ///
    /// For example `simulate --completions bash >
    /// ~/.local/share/bash-completion/completions/simulate`. Takes no other
    /// option.
    #[arg(long, value_name = "SHELL", value_enum, exclusive = true)]
    completions: Option<Shell>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Run(Box<Args>),
    Completions(Shell),
}

/// Parses the whole command line, program name first.
fn parse_args<I, T>(argv: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::try_parse_from(argv)?;
    Ok(match args.completions {
        Some(shell) => Command::Completions(shell),
        None => Command::Run(Box::new(args)),
    })
}
fn parse_number<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("expects {what}, got '{value}'"))
}

/// Parses a count that must be at least 1.
fn parse_positive(value: &str) -> Result<usize, String> {
    match parse_number(value, "a positive integer")? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn parse_topology(value: &str) -> Result<Topology, String> {
    value.parse().map_err(|e| format!("{e}"))
}

fn parse_schedule(value: &str) -> Result<Schedule, String> {
    value.parse().map_err(|e| format!("{e}"))
}

fn parse_scale(value: &str) -> Result<f64, String> {
    let scale: f64 = parse_number(value, "a number")?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(format!("must be a positive finite number, got {scale}"));
    }
    Ok(scale)
}

/// Splits `WHO@WHEN`.
fn at<'a>(item: &'a str, form: &str) -> Result<(&'a str, &'a str), String> {
    item.split_once('@')
        .ok_or_else(|| format!("expects {form}, got '{item}'"))
}

/// Parses `N@R`.
fn parse_events(item: &str) -> Result<(usize, u32), String> {
    let (node, round) = at(item, "NODE@ROUND[,NODE@ROUND…]")?;
    Ok((
        parse_number(node, "a member id in NODE@ROUND")?,
        parse_number(round, "a round in NODE@ROUND")?,
    ))
}

/// Parses `T1..T2` or `T1..` (ticks).
fn parse_span(value: &str) -> Result<Span, String> {
    let (start, end) = value
        .split_once("..")
        .ok_or_else(|| format!("expects a span of ticks T1..T2 or T1.., got '{value}'"))?;
    let start = parse_number(start, "a first tick in T1..T2")?;
    if end.is_empty() {
        return Ok(Span::from_tick(start));
    }
    Ok(Span::between(
        start,
        parse_number(end, "a last tick in T1..T2")?,
    ))
}

/// Parses `A-B`.
fn parse_pair(value: &str) -> Result<(usize, usize), String> {
    let (a, b) = value
        .split_once('-')
        .ok_or_else(|| format!("expects two members A-B, got '{value}'"))?;
    Ok((
        parse_number(a, "a member id in A-B")?,
        parse_number(b, "a member id in A-B")?,
    ))
}

/// Parses `A-B@T1..T2` (a cut both ways or, with `both_ways` false, from A to B).
fn cut(item: &str, both_ways: bool) -> Result<Cut, String> {
    let (pair, span) = at(item, "WHO@WHEN[,WHO@WHEN…]")?;
    let (from, to) = parse_pair(pair)?;
    Ok(Cut {
        from,
        to,
        both_ways,
        span: parse_span(span)?,
    })
}

fn parse_cuts(item: &str) -> Result<Cut, String> {
    cut(item, true)
}

fn parse_oneway_cuts(item: &str) -> Result<Cut, String> {
    cut(item, false)
}

/// Parses `N@T1..T2`.
fn parse_member_spans(item: &str) -> Result<(usize, Span), String> {
    let (node, span) = at(item, "WHO@WHEN[,WHO@WHEN…]")?;
    Ok((
        parse_number(node, "a member id in N@T1..T2")?,
        parse_span(span)?,
    ))
}

/// Parses `A-B@T`.
fn parse_suspicions(item: &str) -> Result<Suspicion, String> {
    let (pair, tick) = at(item, "WHO@WHEN[,WHO@WHEN…]")?;
    let (by, of) = parse_pair(pair)?;
    Ok(Suspicion {
        tick: parse_number(tick, "a tick in A-B@T")?,
        by,
        of,
    })
}

fn read_edges(path: &str) -> Result<Vec<(usize, usize)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, line)| {
            let mut parts = line.split_whitespace();
            let mut next = || -> Result<usize, String> {
                parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("{path}:{}: expected two node ids, got '{line}'", n + 1))
            };
            Ok((next()?, next()?))
        })
        .collect()
}

/// A JSON number, or `null` for NaN and infinities.
fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "null".into()
    }
}

fn json_optional<T: ToString>(x: Option<T>) -> String {
    x.map_or_else(|| "null".into(), |v| v.to_string())
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Summary figures of a run.
struct Summary {
    nodes: usize,
    survivors: usize,
    crashed: usize,
    left: usize,
    /// Members that failed (no quorum, excluded, not converged, …).
    failed: usize,
    failures: Vec<String>,
    max_abs_error: Option<f64>,
    residual: Option<f64>,
    spectral_gap: Option<f64>,
    spectral_rounds_bound: Option<u64>,
    exact_rounds_bound: Option<u32>,
    diameter: Option<usize>,
    wall_ms: f64,
}

fn summarize(args: &Args, graph: &Graph, report: &Report, wall_ms: f64) -> Summary {
    let count = |f: fn(&MemberOutcome) -> bool| report.members.iter().filter(|n| f(n)).count();
    let failures = report
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            MemberOutcome::Failed(e) => Some(format!("member {i}: {e}")),
            MemberOutcome::Unfinished { round } => {
                Some(format!("member {i}: unfinished at round {round}"))
            }
            _ => None,
        })
        .take(3)
        .collect();
    let weights = match args.schedule {
        Schedule::Metropolis => Some(Weights::Metropolis),
        Schedule::Laplacian { eps } => Some(Weights::Laplacian { eps }),
        Schedule::Exact => None,
    };
    let spectrum = weights
        .filter(|_| graph.len() <= SPECTRUM_MAX_NODES)
        .and_then(|w| graph.spectrum(w).ok());
    let ceil_log2 = usize::BITS - (graph.len().max(1) - 1).leading_zeros();
    Summary {
        nodes: graph.len(),
        survivors: report.survivors(),
        crashed: count(|n| matches!(n, MemberOutcome::Crashed { .. })),
        left: count(|n| matches!(n, MemberOutcome::Left { .. })),
        failed: count(|n| matches!(n, MemberOutcome::Failed(_))),
        failures,
        max_abs_error: report.max_abs_error(),
        residual: report
            .members
            .iter()
            .filter_map(MemberOutcome::reduction)
            .map(|r| r.residual)
            .reduce(f64::max),
        spectral_gap: spectrum.map(|s| s.gap),
        spectral_rounds_bound: spectrum.and_then(|s| s.rounds_for(args.tol)),
        exact_rounds_bound: (args.schedule == Schedule::Exact).then_some(ceil_log2 + 2),
        diameter: graph.diameter_bound(),
        wall_ms,
    }
}

/// The topology as the reports name it: `edges:FILE` for `--edges FILE`.
fn topology_name(args: &Args) -> String {
    args.edges_file
        .as_deref()
        .map_or_else(|| args.topology.to_string(), |f| format!("edges:{f}"))
}

fn json(args: &Args, report: &Report, s: &Summary) -> String {
    let contributors = report.contributors.as_ref();
    let departed = contributors.map(|c| {
        let ids: Vec<String> = c.departed().iter().map(|d| d.to_string()).collect();
        format!("[{}]", ids.join(","))
    });
    let failures: Vec<String> = s.failures.iter().map(|f| json_string(f)).collect();
    let m = report.messages;
    let fields = [
        ("nodes", s.nodes.to_string()),
        ("topology", json_string(&topology_name(args))),
        ("schedule", json_string(&args.schedule.to_string())),
        ("dim", args.dim.to_string()),
        ("tol", json_number(args.tol)),
        ("seed", args.seed.to_string()),
        ("rounds", report.rounds.to_string()),
        ("ticks", report.ticks.to_string()),
        ("converged", report.converged.to_string()),
        ("survivors", s.survivors.to_string()),
        ("crashed", s.crashed.to_string()),
        ("left", s.left.to_string()),
        ("failed", s.failed.to_string()),
        ("contributors", json_optional(contributors.map(|c| c.len()))),
        ("departed", departed.unwrap_or_else(|| "null".into())),
        (
            "max_abs_error",
            s.max_abs_error.map_or_else(|| "null".into(), json_number),
        ),
        (
            "residual",
            s.residual.map_or_else(|| "null".into(), json_number),
        ),
        ("diameter", json_optional(s.diameter)),
        (
            "spectral_gap",
            s.spectral_gap.map_or_else(|| "null".into(), json_number),
        ),
        (
            "spectral_rounds_bound",
            json_optional(s.spectral_rounds_bound),
        ),
        ("exact_rounds_bound", json_optional(s.exact_rounds_bound)),
        (
            "messages",
            format!(
                "{{\"sent\":{},\"dropped\":{},\"duplicated\":{},\"delayed\":{},\"cut\":{}}}",
                m.sent, m.dropped, m.duplicated, m.delayed, m.cut
            ),
        ),
        ("failures", format!("[{}]", failures.join(","))),
        ("wall_ms", json_number(s.wall_ms)),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn text(args: &Args, report: &Report, s: &Summary) -> String {
    let opt = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.3e}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} members, {} topology, {} schedule, d = {}, tol = {:e}",
        s.nodes,
        topology_name(args),
        args.schedule,
        args.dim,
        args.tol
    );
    let _ = writeln!(
        out,
        "converged: {}   rounds: {}   ticks: {}   wall: {:.1} ms",
        report.converged, report.rounds, report.ticks, s.wall_ms
    );
    let _ = write!(
        out,
        "survivors: {}   crashed: {}   left: {}   contributors: {}",
        s.survivors,
        s.crashed,
        s.left,
        report
            .contributors
            .as_ref()
            .map_or_else(|| "disagree".to_string(), |c| c.len().to_string())
    );
    if s.failed > 0 {
        let _ = write!(out, "   failed: {}", s.failed);
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "max |value - exact mean of contributors|: {}   reported residual: {}",
        opt(s.max_abs_error),
        opt(s.residual)
    );
    if let Some(bound) = s.spectral_rounds_bound {
        let _ = writeln!(
            out,
            "spectral prediction: {bound} rounds (gap {})",
            opt(s.spectral_gap)
        );
    }
    if let Some(bound) = s.exact_rounds_bound {
        let _ = writeln!(out, "exact-schedule bound: {bound} rounds");
    }
    let m = report.messages;
    let _ = write!(
        out,
        "messages: {} sent, {} dropped, {} duplicated, {} delayed",
        m.sent, m.dropped, m.duplicated, m.delayed
    );
    if m.cut > 0 {
        let _ = write!(out, ", {} cut", m.cut);
    }
    out.push('\n');
    for f in &s.failures {
        let _ = writeln!(out, "  {f}");
    }
    out
}

fn write_trace(path: &str, report: &Report) -> Result<(), String> {
    let mut csv = String::from("round,nodes,max_error,residual,mass_defect\n");
    for row in &report.trace {
        let _ = writeln!(
            csv,
            "{},{},{:e},{:e},{:e}",
            row.round, row.nodes, row.max_error, row.residual, row.mass_defect
        );
    }
    std::fs::write(path, csv).map_err(|e| format!("cannot write {path}: {e}"))
}

/// Refuses a run whose lower bound exceeds `available`, with both figures.
fn check_memory(graph: &Graph, dim: usize, available: Option<u128>) -> Result<(), String> {
    let needed = memory_needed(graph, dim);
    match available {
        Some(available) if needed > available => {
            let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
            Err(format!(
                "{} members with {dim} values each need at least {:.1} GiB (each member keeps \
                 about 2 · degree + 8 vectors), but {:.1} GiB are available (the smaller of \
                 MemAvailable and the address-space limit); use fewer members or a smaller --dim",
                graph.len(),
                gib(needed),
                gib(available)
            ))
        }
        _ => Ok(()),
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let graph = match &args.edges_file {
        Some(path) => Graph::from_edges(args.nodes, &read_edges(path)?),
        None => args.topology.build(args.nodes, args.seed),
    }
    .map_err(|e| e.to_string())?;
    check_memory(&graph, args.dim, available_memory())?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed ^ 0x5EED_1A7A);
    let random_row = |rng: &mut Xoshiro256PlusPlus| -> Vec<f64> {
        (0..args.dim)
            .map(|_| args.scale * rng.random_range(-1.0..1.0))
            .collect()
    };
    let inputs: Vec<f64> = (0..graph.len())
        .flat_map(|_| random_row(&mut rng))
        .collect();
    let input_changes = args
        .changes
        .iter()
        .map(|&(node, round)| InputChange {
            member: node,
            round,
            input: random_row(&mut rng),
        })
        .collect();
    let options = sim::Options {
        config: Config {
            schedule: args.schedule,
            tol: args.tol,
            max_rounds: args.max_rounds,
        },
        faults: Faults {
            drop: args.drop,
            duplicate: args.duplicate,
            max_delay: args.delay,
            crashes: args.crashes.clone(),
            leaves: args.leaves.clone(),
            input_changes,
            detect_after: args.detect,
            cuts: [args.cuts.as_slice(), &args.oneway_cuts].concat(),
            isolations: args.isolations.clone(),
            freezes: args.freezes.clone(),
            false_suspicions: args.suspicions.clone(),
            suspect_after: args.suspect_after,
            forged_results: Vec::new(),
        },
        seed: args.seed,
        no_trace: false,
    };
    let start = Instant::now();
    let report = sim::simulate(&graph, &inputs, args.dim, &options).map_err(|e| e.to_string())?;
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let summary = summarize(args, &graph, &report, wall_ms);
    if let Some(path) = &args.trace {
        write_trace(path, &report)?;
    }
    if args.json {
        println!("{}", json(args, &report, &summary));
    } else {
        print!("{}", text(args, &report, &summary));
    }
    Ok(report.converged)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os()) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Completions(shell)) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "simulate", &mut script);
            return match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("simulate: cannot write the completion script: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Err(e) if !e.use_stderr() => {
            // `--help` or `--version`: a closed stdout has no one to tell.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("simulate: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_cannot_fit_is_refused_with_both_figures() {
        let ring = Topology::Ring.build(1000, 0).unwrap();
        // 1000 members × (2·2 + 8) vectors × 1e8 + 1 values × 8 bytes.
        assert_eq!(
            memory_needed(&ring, 100_000_000),
            1000 * 12 * 100_000_001 * 8
        );
        let err = check_memory(&ring, 100_000_000, Some(6 << 30)).unwrap_err();
        assert!(
            err.contains("at least 8940.7 GiB") && err.contains("6.0 GiB"),
            "{err}"
        );
        assert_eq!(check_memory(&ring, 1000, Some(6 << 30)), Ok(()));
        assert_eq!(check_memory(&ring, 100_000_000, None), Ok(()));
    }

    fn parse(s: &str) -> Result<Command, clap::Error> {
        parse_args(std::iter::once("simulate").chain(s.split_whitespace()))
    }

    fn run_args(s: &str) -> Args {
        match parse(s) {
            Ok(Command::Run(args)) => *args,
            other => panic!("expected a run for {s:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_example() {
        let args = run_args(
            "-n 1024 --topology exponential --schedule exact --dim 4 --tol 1e-12 \
             --drop 0.1 --crash 3@5,17@9 --seed 7 --json",
        );
        assert_eq!(args.nodes, 1024);
        assert_eq!(args.schedule, Schedule::Exact);
        assert_eq!(args.dim, 4);
        assert_eq!(args.crashes, vec![(3, 5), (17, 9)]);
        assert_eq!(args.seed, 7);
        assert!(args.json);
        let args = run_args("--tol=1e-9 --schedule=laplacian:0.2");
        assert_eq!(args.tol, 1e-9);
        assert_eq!(args.schedule, Schedule::Laplacian { eps: 0.2 });
        let help = parse("--help").expect_err("help is not a run");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let args = run_args("");
        assert_eq!(
            (args.nodes, args.dim, args.max_rounds, args.detect),
            (64, 1, 100_000, 3)
        );
        assert_eq!(args.topology, Topology::Exponential);
        assert_eq!(args.schedule, Schedule::Exact);
        assert_eq!(
            (args.tol, args.drop, args.duplicate, args.scale),
            (1e-12, 0.0, 0.0, 1.0)
        );
        assert_eq!((args.delay, args.seed, args.suspect_after), (0, 0, None));
        assert!(!args.json && args.trace.is_none() && args.edges_file.is_none());
    }

    /// `--np`, `-n` and the old `--nodes` are one option; the last one counts.
    #[test]
    fn the_member_count_has_one_name_and_an_old_alias() {
        assert_eq!(run_args("--np 8").nodes, 8);
        assert_eq!(run_args("-n 9").nodes, 9);
        assert_eq!(run_args("--nodes=10").nodes, 10);
        assert_eq!(run_args("--nodes 10 -n 11").nodes, 11);
    }

    /// Lists come in one option or in several, in the order given.
    #[test]
    fn repeated_event_options_add_up() {
        let args = run_args("--crash 3@5 --crash 17@9 --leave 1@2 --change 4@1,5@2");
        assert_eq!(args.crashes, vec![(3, 5), (17, 9)]);
        assert_eq!(args.leaves, vec![(1, 2)]);
        assert_eq!(args.changes, vec![(4, 1), (5, 2)]);
    }

    #[test]
    fn parses_outages() {
        let args = run_args(
            "--cut 0-1@10..30,2-3@5.. --cut-oneway 4-5@1..2 --isolate 6@3..9 \
             --freeze 2@4..40 --suspect 1-7@12 --suspect-after 5",
        );
        let cut = |from, to, both_ways, span| Cut {
            from,
            to,
            both_ways,
            span,
        };
        assert_eq!(
            args.cuts,
            vec![
                cut(0, 1, true, Span::between(10, 30)),
                cut(2, 3, true, Span::from_tick(5)),
            ]
        );
        assert_eq!(
            args.oneway_cuts,
            vec![cut(4, 5, false, Span::between(1, 2))]
        );
        assert_eq!(args.isolations, vec![(6, Span::between(3, 9))]);
        assert_eq!(args.freezes, vec![(2, Span::between(4, 40))]);
        assert_eq!(
            args.suspicions,
            vec![Suspicion {
                tick: 12,
                by: 1,
                of: 7
            }]
        );
        assert_eq!(args.suspect_after, Some(5));
    }

    #[test]
    fn completions_name_the_options() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            assert_eq!(
                parse(&format!("--completions {shell}")).ok(),
                Some(Command::Completions(shell))
            );
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "simulate", &mut script);
            let script = String::from_utf8(script).expect("a UTF-8 script");
            for option in ["np", "topology", "suspect-after", "json"] {
                assert!(script.contains(option), "{shell}: {option} missing");
            }
        }
    }

    #[test]
    fn bad_arguments_are_one_line_errors() {
        for (line, needle) in [
            (
                "--nodes x",
                "invalid value 'x' for '--np <N>': expects a positive integer",
            ),
            ("--np 0", "at least 1"),
            ("--topology star", "unknown topology"),
            ("--schedule fast", "unknown schedule"),
            ("--crash 3", "NODE@ROUND"),
            ("--crash 3@x", "round"),
            ("--bogus 1", "unexpected argument '--bogus'"),
            ("--tol", "a value is required"),
            ("--tol x", "invalid float literal"),
            ("--scale -1", "--scale"),
            ("--scale 0", "positive finite"),
            ("--cut 0-1", "WHO@WHEN"),
            ("--cut 0@1..2", "A-B"),
            ("--cut 0-x@1..2", "member id"),
            ("--cut 0-1@5", "T1..T2"),
            ("--freeze 2@x..4", "first tick"),
            ("--isolate 2@1..y", "last tick"),
            ("--suspect 1-2@z", "tick"),
            ("--suspect-after k", "invalid digit"),
            ("--edges e.txt --topology ring", "cannot be used with"),
            ("--completions tcsh", "invalid value 'tcsh'"),
            ("--completions zsh --json", "cannot be used with"),
        ] {
            let err = match parse(line) {
                Err(e) if e.use_stderr() => one_line(&e),
                other => panic!("{line}: expected an error, got {other:?}"),
            };
            assert!(err.contains(needle), "{line}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn json_numbers_are_valid() {
        assert_eq!(json_number(1e-12), "1e-12");
        assert_eq!(json_number(3.0), "3.0");
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\u000a\"");
    }
}
