//! `simulate`: run the consensus engine on a simulated network with faults.
//!
//! ```text
//! simulate --nodes 1024 --topology exponential --schedule exact --dim 4 \
//!          --tol 1e-12 --drop 0.1 --crash 3@5,17@9 --seed 7 --json
//! simulate --nodes 16 --schedule metropolis --tol 1e-9 --suspect-after 5 \
//!          --freeze 2@4..40 --cut 0-1@10..30
//! ```
//!
//! Exit status: 0 when every survivor finished and they agree, 1 when the
//! run did not converge (the report is still printed), 2 for bad arguments.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use dac_core::graph::{SPECTRUM_MAX_NODES, Weights};
use dac_core::sim::{self, Cut, Faults, InputChange, NodeOutcome, Report, Span, Suspicion};
use dac_core::{Config, Graph, Schedule, Topology};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const USAGE: &str = "\
usage: simulate [options]

  --nodes N             members (default 64)
  --topology T          complete | ring | torus | torus:RxC | random-regular:K |
                        exponential | hypercube (default exponential)
  --edges FILE          read the graph from FILE instead: one 'a b' pair per line
  --schedule S          laplacian:EPS | metropolis | exact (default exact)
  --dim D               length of each member's vector (default 1)
  --tol T               target relative accuracy (default 1e-12)
  --max-rounds R        give up after R rounds (default 100000)
  --drop P              probability that a message is lost (default 0)
  --duplicate P         probability that a message is delivered twice (default 0)
  --delay K             delay each message by 0..=K ticks (default 0)
  --crash N@R,...       member N crashes on reaching round R
  --leave N@R,...       member N leaves on reaching round R
  --change N@R,...      member N gets a new random input at round R
  --detect T            ticks until a crash is detected (default 3)
  --cut A-B@T1..T2,...  the link between A and B is cut both ways from tick T1
                        up to T2 (T1.. : for good)
  --cut-oneway A-B@T1..T2,...
                        messages from A to B are lost from tick T1 up to T2
  --isolate N@T1..T2,...
                        every link of member N is cut from tick T1 up to T2
  --freeze N@T1..T2,... member N is frozen (as by SIGSTOP) from tick T1 up to T2
  --suspect A-B@T,...   at tick T, member A suspects member B, which is fine
  --suspect-after K     run the silence-based failure detector: a member
                        suspects a neighbour not heard for K ticks (default: off)
  --scale X             inputs are uniform in [-X, X) (default 1)
  --seed S              seed for the topology, the inputs and the faults (default 0)
  --trace FILE          write the per-round trace as CSV
  --json                print one JSON object instead of text
  --help                print this help";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
struct Args {
    nodes: usize,
    topology: Topology,
    edges_file: Option<String>,
    schedule: Schedule,
    dim: usize,
    tol: f64,
    max_rounds: u32,
    drop: f64,
    duplicate: f64,
    delay: u32,
    crashes: Vec<(usize, u32)>,
    leaves: Vec<(usize, u32)>,
    changes: Vec<(usize, u32)>,
    detect: u32,
    cuts: Vec<Cut>,
    isolations: Vec<(usize, Span)>,
    freezes: Vec<(usize, Span)>,
    suspicions: Vec<Suspicion>,
    suspect_after: Option<u32>,
    scale: f64,
    seed: u64,
    trace: Option<String>,
    json: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            nodes: 64,
            topology: Topology::Exponential,
            edges_file: None,
            schedule: Schedule::Exact,
            dim: 1,
            tol: 1e-12,
            max_rounds: 100_000,
            drop: 0.0,
            duplicate: 0.0,
            delay: 0,
            crashes: Vec::new(),
            leaves: Vec::new(),
            changes: Vec::new(),
            detect: 3,
            cuts: Vec::new(),
            isolations: Vec::new(),
            freezes: Vec::new(),
            suspicions: Vec::new(),
            suspect_after: None,
            scale: 1.0,
            seed: 0,
            trace: None,
            json: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Run(Box<Args>),
    Help,
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str, what: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} expects {what}, got '{value}'"))
}

/// Parses `N@R,N@R,…`.
fn parse_events(flag: &str, value: &str) -> Result<Vec<(usize, u32)>, String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (node, round) = item
                .split_once('@')
                .ok_or_else(|| format!("{flag} expects NODE@ROUND[,NODE@ROUND…], got '{item}'"))?;
            Ok((
                parse_number(flag, node, "a member id in NODE@ROUND")?,
                parse_number(flag, round, "a round in NODE@ROUND")?,
            ))
        })
        .collect()
}

/// Parses `T1..T2` or `T1..` (ticks).
fn parse_span(flag: &str, value: &str) -> Result<Span, String> {
    let (start, end) = value
        .split_once("..")
        .ok_or_else(|| format!("{flag} expects a span of ticks T1..T2 or T1.., got '{value}'"))?;
    let start = parse_number(flag, start, "a first tick in T1..T2")?;
    if end.is_empty() {
        return Ok(Span::from_tick(start));
    }
    Ok(Span::between(
        start,
        parse_number(flag, end, "a last tick in T1..T2")?,
    ))
}

/// Parses `A-B`.
fn parse_pair(flag: &str, value: &str) -> Result<(usize, usize), String> {
    let (a, b) = value
        .split_once('-')
        .ok_or_else(|| format!("{flag} expects two members A-B, got '{value}'"))?;
    Ok((
        parse_number(flag, a, "a member id in A-B")?,
        parse_number(flag, b, "a member id in A-B")?,
    ))
}

/// Parses `WHO@WHEN,WHO@WHEN,…` with `item` for each pair.
fn parse_list<T>(
    flag: &str,
    value: &str,
    item: impl Fn(&str, &str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (who, when) = part
                .split_once('@')
                .ok_or_else(|| format!("{flag} expects WHO@WHEN[,WHO@WHEN…], got '{part}'"))?;
            item(who, when)
        })
        .collect()
}

fn parse_cuts(flag: &str, value: &str, both_ways: bool) -> Result<Vec<Cut>, String> {
    parse_list(flag, value, |pair, span| {
        let (from, to) = parse_pair(flag, pair)?;
        Ok(Cut {
            from,
            to,
            both_ways,
            span: parse_span(flag, span)?,
        })
    })
}

fn parse_member_spans(flag: &str, value: &str) -> Result<Vec<(usize, Span)>, String> {
    parse_list(flag, value, |node, span| {
        Ok((
            parse_number(flag, node, "a member id in N@T1..T2")?,
            parse_span(flag, span)?,
        ))
    })
}

fn parse_suspicions(flag: &str, value: &str) -> Result<Vec<Suspicion>, String> {
    parse_list(flag, value, |pair, tick| {
        let (by, of) = parse_pair(flag, pair)?;
        Ok(Suspicion {
            tick: parse_number(flag, tick, "a tick in A-B@T")?,
            by,
            of,
        })
    })
}

fn parse_args(argv: &[String]) -> Result<Command, String> {
    let mut args = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let (flag, inline) = match argv[i].split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (argv[i].clone(), None),
        };
        i += 1;
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--json" => {
                args.json = true;
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = argv
                    .get(i)
                    .ok_or_else(|| format!("{flag} expects a value"))?
                    .clone();
                i += 1;
                v
            }
        };
        let v = value.as_str();
        match flag.as_str() {
            "--nodes" => args.nodes = parse_number(&flag, v, "a positive integer")?,
            "--topology" => args.topology = v.parse().map_err(|e| format!("{e}"))?,
            "--edges" => args.edges_file = Some(value.clone()),
            "--schedule" => args.schedule = v.parse().map_err(|e| format!("{e}"))?,
            "--dim" => args.dim = parse_number(&flag, v, "a positive integer")?,
            "--tol" => args.tol = parse_number(&flag, v, "a number")?,
            "--max-rounds" => args.max_rounds = parse_number(&flag, v, "a positive integer")?,
            "--drop" => args.drop = parse_number(&flag, v, "a probability")?,
            "--duplicate" => args.duplicate = parse_number(&flag, v, "a probability")?,
            "--delay" => args.delay = parse_number(&flag, v, "a number of ticks")?,
            "--crash" => args.crashes.extend(parse_events(&flag, v)?),
            "--leave" => args.leaves.extend(parse_events(&flag, v)?),
            "--change" => args.changes.extend(parse_events(&flag, v)?),
            "--detect" => args.detect = parse_number(&flag, v, "a number of ticks")?,
            "--cut" => args.cuts.extend(parse_cuts(&flag, v, true)?),
            "--cut-oneway" => args.cuts.extend(parse_cuts(&flag, v, false)?),
            "--isolate" => args.isolations.extend(parse_member_spans(&flag, v)?),
            "--freeze" => args.freezes.extend(parse_member_spans(&flag, v)?),
            "--suspect" => args.suspicions.extend(parse_suspicions(&flag, v)?),
            "--suspect-after" => {
                args.suspect_after = Some(parse_number(&flag, v, "a number of ticks")?);
            }
            "--scale" => args.scale = parse_number(&flag, v, "a number")?,
            "--seed" => args.seed = parse_number(&flag, v, "an unsigned integer")?,
            "--trace" => args.trace = Some(value.clone()),
            _ => return Err(format!("unknown option '{flag}' (see --help)")),
        }
    }
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if args.dim == 0 {
        return Err("--dim must be at least 1".into());
    }
    if !(args.scale.is_finite() && args.scale > 0.0) {
        return Err(format!(
            "--scale must be a positive finite number, got {}",
            args.scale
        ));
    }
    Ok(Command::Run(Box::new(args)))
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
    let count = |f: fn(&NodeOutcome) -> bool| report.nodes.iter().filter(|n| f(n)).count();
    let failures = report
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            NodeOutcome::Failed(e) => Some(format!("member {i}: {e}")),
            NodeOutcome::Unfinished { round } => {
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
        crashed: count(|n| matches!(n, NodeOutcome::Crashed { .. })),
        left: count(|n| matches!(n, NodeOutcome::Left { .. })),
        failed: count(|n| matches!(n, NodeOutcome::Failed(_))),
        failures,
        max_abs_error: report.max_abs_error(),
        residual: report
            .nodes
            .iter()
            .filter_map(NodeOutcome::reduction)
            .map(|r| r.residual)
            .reduce(f64::max),
        spectral_gap: spectrum.map(|s| s.gap),
        spectral_rounds_bound: spectrum.and_then(|s| s.rounds_for(args.tol)),
        exact_rounds_bound: (args.schedule == Schedule::Exact).then_some(ceil_log2 + 2),
        diameter: graph.diameter_bound(),
        wall_ms,
    }
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
        (
            "topology",
            json_string(
                &args
                    .edges_file
                    .as_deref()
                    .map_or_else(|| args.topology.to_string(), |f| format!("edges:{f}")),
            ),
        ),
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
        s.nodes, args.topology, args.schedule, args.dim, args.tol
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

fn run(args: &Args) -> Result<bool, String> {
    let graph = match &args.edges_file {
        Some(path) => Graph::from_edges(args.nodes, &read_edges(path)?),
        None => args.topology.build(args.nodes, args.seed),
    }
    .map_err(|e| e.to_string())?;
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
            node,
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
            cuts: args.cuts.clone(),
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
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&argv) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => match run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("simulate: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, String> {
        let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse_args(&argv)
    }

    #[test]
    fn parses_the_documented_example() {
        let Command::Run(args) = parse(
            "--nodes 1024 --topology exponential --schedule exact --dim 4 --tol 1e-12 \
             --drop 0.1 --crash 3@5,17@9 --seed 7 --json",
        )
        .unwrap() else {
            panic!("expected a run");
        };
        assert_eq!(args.nodes, 1024);
        assert_eq!(args.schedule, Schedule::Exact);
        assert_eq!(args.dim, 4);
        assert_eq!(args.crashes, vec![(3, 5), (17, 9)]);
        assert_eq!(args.seed, 7);
        assert!(args.json);
        assert_eq!(
            parse("--tol=1e-9 --schedule=laplacian:0.2").map(|_| ()),
            Ok(())
        );
        assert_eq!(parse("--help"), Ok(Command::Help));
    }

    #[test]
    fn parses_outages() {
        let Command::Run(args) = parse(
            "--cut 0-1@10..30,2-3@5.. --cut-oneway 4-5@1..2 --isolate 6@3..9 \
             --freeze 2@4..40 --suspect 1-7@12 --suspect-after 5",
        )
        .unwrap() else {
            panic!("expected a run");
        };
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
                cut(4, 5, false, Span::between(1, 2)),
            ]
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
    fn bad_arguments_are_one_line_errors() {
        for (line, needle) in [
            ("--nodes x", "--nodes expects a positive integer"),
            ("--nodes 0", "at least 1"),
            ("--topology star", "unknown topology"),
            ("--schedule fast", "unknown schedule"),
            ("--crash 3", "NODE@ROUND"),
            ("--crash 3@x", "round"),
            ("--bogus 1", "unknown option"),
            ("--tol", "expects a value"),
            ("--scale -1", "--scale"),
            ("--cut 0-1", "WHO@WHEN"),
            ("--cut 0@1..2", "A-B"),
            ("--cut 0-x@1..2", "member id"),
            ("--cut 0-1@5", "T1..T2"),
            ("--freeze 2@x..4", "first tick"),
            ("--isolate 2@1..y", "last tick"),
            ("--suspect 1-2@z", "tick"),
            ("--suspect-after k", "number of ticks"),
        ] {
            let err = parse(line).unwrap_err();
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
