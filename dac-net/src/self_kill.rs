//! Fault injection for demonstrations: a rank that dies abruptly mid-run.

use std::time::Duration;

/// "Rank `rank` kills itself with SIGKILL `after` into the run": what the
/// `--kill-rank K --kill-after-ms T` options of the demo programs ask
/// for, to show a member vanishing without a goodbye.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfKill {
    /// The rank that dies.
    pub rank: usize,
    /// How long after [`SelfKill::arm`] it dies.
    pub after: Duration,
}

impl SelfKill {
    /// From the values of `--kill-rank` and `--kill-after-ms`, which go
    /// together: `None` when neither was given.
    ///
    /// # Errors
    /// A one-line message when only one of the two was given.
    pub fn from_options(
        rank: Option<usize>,
        after_ms: Option<u64>,
    ) -> Result<Option<SelfKill>, String> {
        match (rank, after_ms) {
            (Some(rank), Some(ms)) => Ok(Some(SelfKill {
                rank,
                after: Duration::from_millis(ms),
            })),
            (None, None) => Ok(None),
            _ => Err("--kill-rank and --kill-after-ms go together".into()),
        }
    }

    /// On the rank that is to die (`my_rank == self.rank`), starts a thread
    /// that sends this process SIGKILL (through the `kill` command) after
    /// [`SelfKill::after`], saying so on stderr with the wall-clock time
    /// (`rank K: SIGKILL at unix_us=T`); elsewhere, nothing.
    pub fn arm(&self, my_rank: usize) {
        if my_rank != self.rank {
            return;
        }
        let after = self.after;
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let pid = std::process::id().to_string();
            // For the benchmark of what a death costs (scripts/bench-views).
            let at = std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            eprintln!("rank {my_rank}: SIGKILL at unix_us={at}");
            // If `kill` is missing the process lives on, and the run shows
            // no departure: nothing to recover from.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SelfKill;

    #[test]
    fn the_two_options_go_together() {
        assert_eq!(SelfKill::from_options(None, None), Ok(None));
        assert_eq!(
            SelfKill::from_options(Some(3), Some(250)),
            Ok(Some(SelfKill {
                rank: 3,
                after: Duration::from_millis(250)
            }))
        );
        let both = "--kill-rank and --kill-after-ms go together";
        assert_eq!(SelfKill::from_options(Some(3), None), Err(both.to_string()));
        assert_eq!(
            SelfKill::from_options(None, Some(250)),
            Err(both.to_string())
        );
    }
}
