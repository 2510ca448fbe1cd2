//! Relays the ranks' output line by line, each line prefixed with `[RANK] `.
//!
//! One thread owns dacrun's stdout and stderr and writes whole lines, so
//! lines from different ranks never mix. The ranks' pipes are read by tokio
//! tasks that hand complete lines to that thread through a bounded channel:
//! a slow reader of dacrun's output slows the ranks down instead of growing
//! a buffer, and never blocks dacrun's timers or signal handling.

use std::io::{self, Write};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};

/// Lines waiting for the writer thread; beyond this the relays wait.
const QUEUE_LINES: usize = 256;

/// Once every rank has exited, a pipe that stays silent this long is
/// abandoned (a background process a rank left behind may hold it open).
const SILENCE_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Which of dacrun's own streams a line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// dacrun's stdout, for the ranks' stdout.
    Out,
    /// dacrun's stderr, for the ranks' stderr and dacrun's own messages.
    Err,
}

/// A handle for sending complete lines to the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// Complete lines, newline included, with the stream they belong to.
    lines: mpsc::Sender<(Stream, Vec<u8>)>,
}

impl Output {
    /// Starts the writer thread; it ends once every [`Output`] is dropped.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub(crate) fn start() -> io::Result<(Output, JoinHandle<()>)> {
        let (lines, queue) = mpsc::channel(QUEUE_LINES);
        let writer = std::thread::Builder::new()
            .name("dacrun-output".into())
            .spawn(move || write_lines(queue))?;
        Ok((Output { lines }, writer))
    }

    /// Prints one of dacrun's own messages on stderr as `dacrun: MESSAGE`.
    pub(crate) async fn note(&self, message: &str) {
        self.send(Stream::Err, format!("dacrun: {message}\n").into_bytes())
            .await;
    }

    /// Queues one complete line; lines are dropped once the writer is gone.
    async fn send(&self, stream: Stream, line: Vec<u8>) {
        // The writer only stops when every sender is gone, so an error here
        // cannot happen while `self` exists; there is nothing to report it to.
        let _ = self.lines.send((stream, line)).await;
    }
}

/// The writer thread: writes and flushes each line as it arrives.
fn write_lines(mut queue: mpsc::Receiver<(Stream, Vec<u8>)>) {
    while let Some((stream, line)) = queue.blocking_recv() {
        // A closed stdout (`dacrun … | head`) must not stop the relays, or
        // the ranks would block on full pipes: write errors drop the line.
        let _ = match stream {
            Stream::Out => write_line(&mut io::stdout().lock(), &line),
            Stream::Err => write_line(&mut io::stderr().lock(), &line),
        };
    }
}

/// Writes one line in a single call and flushes it.
fn write_line(to: &mut impl Write, line: &[u8]) -> io::Result<()> {
    to.write_all(line)?;
    to.flush()
}

/// Copies one of rank `rank`'s pipes to `stream`, prefixing every line.
///
/// Bytes pass through unchanged (they need not be UTF-8); a last line
/// without a newline gets one. Ends at end of file, on a read error, or when
/// the pipe stays silent for [`SILENCE_AFTER_EXIT`] after `all_exited`
/// becomes true.
pub(crate) async fn relay(
    rank: usize,
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    output: Output,
    mut all_exited: watch::Receiver<bool>,
) {
    let prefix = format!("[{rank}] ");
    let mut reader = BufReader::new(pipe);
    loop {
        let mut line = prefix.clone().into_bytes();
        let more = read_line(&mut reader, &mut line, &mut all_exited).await;
        if line.len() > prefix.len() {
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            output.send(stream, line).await;
        }
        if !more {
            return;
        }
    }
}

/// Appends the next line to `line`; returns whether more may follow.
async fn read_line(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
    line: &mut Vec<u8>,
    all_exited: &mut watch::Receiver<bool>,
) -> bool {
    let read = tokio::select! {
        biased;
        read = reader.read_until(b'\n', line) => read,
        () = wait_until_true(all_exited) => {
            // A cancelled `read_until` keeps what it read in `line`.
            match tokio::time::timeout(SILENCE_AFTER_EXIT, reader.read_until(b'\n', line)).await {
                Ok(read) => read,
                Err(_) => return false,
            }
        }
    };
    matches!(read, Ok(n) if n > 0)
}

/// Resolves once the flag is true, or its sender is gone.
async fn wait_until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|&value| value).await;
}
