//! Shared set-ups for the dac benchmarks.
#![deny(missing_docs)]

use dac_core::sim::{Options, Simulator};
use dac_core::{Config, Graph, Schedule};

/// A simulator of `n` members on a random 4-regular graph with `d = 1` and
/// Metropolis weights, with a tolerance it never reaches, so that every
/// step is a full round (the benchmark's unit of work).
///
/// # Errors
/// If no random 4-regular graph on `n` nodes can be built (`n < 5`).
pub fn million_node_simulator(n: usize) -> dac_core::Result<Simulator> {
    let graph = Graph::random_regular(n, 4, 1)?;
    let inputs: Vec<f64> = (0..n).map(|i| (i % 1000) as f64).collect();
    let options = Options {
        config: Config {
            schedule: Schedule::Metropolis,
            tol: f64::MIN_POSITIVE,
            max_rounds: u32::MAX,
        },
        no_trace: true,
        ..Options::default()
    };
    Simulator::new(graph, &inputs, 1, options)
}

/// Peak resident memory of this process in bytes (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The bench programs' command lines, parsed by clap: `--help` and
/// `--version` print on stdout and exit 0; an argument error is one line
/// `PROGRAM: …` on stderr and exit status 2.
pub mod cli {
    use dac_core::cli::one_line;

    /// Parses this process's command line as `T`, or exits (see the module).
    pub fn parse<T: clap::Parser>(program: &str) -> T {
        match T::try_parse() {
            Ok(args) => args,
            Err(e) if !e.use_stderr() => {
                // `--help` or `--version`: a closed stdout has no one to tell.
                let _ = e.print();
                std::process::exit(0)
            }
            Err(e) => fail(program, &one_line(&e)),
        }
    }

    /// Prints `PROGRAM: MESSAGE` on stderr and exits with status 2.
    pub fn fail(program: &str, message: &str) -> ! {
        eprintln!("{program}: {message}");
        std::process::exit(2)
    }

    /// Parses a count that is at least 1.
    ///
    /// # Errors
    /// A message for clap when `value` is not a positive integer.
    pub fn positive(value: &str) -> Result<usize, String> {
        match value.parse::<usize>() {
            Ok(0) => Err("must be at least 1".into()),
            Ok(n) => Ok(n),
            Err(_) => Err("expects a positive integer".into()),
        }
    }

    /// A comma-separated list of counts, each at least 1: `2,4,8`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Counts(pub Vec<usize>);

    impl std::fmt::Display for Counts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let items: Vec<String> = self.0.iter().map(usize::to_string).collect();
            f.write_str(&items.join(","))
        }
    }

    /// Parses [`Counts`].
    ///
    /// # Errors
    /// A message for clap naming the first item that is not a positive
    /// integer.
    pub fn counts(value: &str) -> Result<Counts, String> {
        value
            .split(',')
            .map(|item| positive(item.trim()).map_err(|e| format!("{item:?} {e}")))
            .collect::<Result<_, _>>()
            .map(Counts)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn counts_are_positive_and_separated_by_commas() {
            assert_eq!(counts("2,4, 8"), Ok(Counts(vec![2, 4, 8])));
            assert_eq!(Counts(vec![1, 1000]).to_string(), "1,1000");
            assert!(counts("2,,8").is_err());
            assert!(counts("0").unwrap_err().contains("at least 1"));
            assert!(counts("x").unwrap_err().contains("positive integer"));
        }
    }
}
