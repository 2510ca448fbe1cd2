//! End-to-end tests of the `dacrun` launcher, with `/bin/sh` scripts as ranks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for runs that should end at once (the ranks' `sleep 1000`
/// would take far longer).
const QUICK: Duration = Duration::from_secs(10);

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("dacrun-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The pids the ranks recorded as `pid-RANK` files.
    fn pids(&self) -> Vec<u32> {
        self.recorded("pid-")
    }

    /// The pids recorded in files whose name starts with `prefix`.
    fn recorded(&self, prefix: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(&self.0).expect("list the scratch directory") {
            let entry = entry.expect("read a scratch entry");
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                let text = std::fs::read_to_string(entry.path()).expect("read a pid file");
                pids.push(text.trim().parse().expect("a pid file holds a pid"));
            }
        }
        pids
    }

    /// Waits until `count` ranks have recorded their pid.
    fn wait_for_pids(&self, count: usize) -> Vec<u32> {
        let start = Instant::now();
        loop {
            let pids = self.pids();
            if pids.len() >= count {
                return pids;
            }
            assert!(start.elapsed() < QUICK, "only {} ranks started", pids.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Records the rank's pid in `$SCRATCH/pid-$DAC_RANK` (atomically).
const RECORD_PID: &str =
    r#"echo $$ > "$SCRATCH/tmp-$DAC_RANK" && mv "$SCRATCH/tmp-$DAC_RANK" "$SCRATCH/pid-$DAC_RANK""#;

/// `dacrun ARGV`.
fn dacrun(argv: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dacrun"));
    command.args(argv).stdin(Stdio::null());
    command
}

/// `dacrun OPTIONS -- /bin/sh -c SCRIPT`, with `SCRATCH` set.
fn dacrun_sh(options: &[&str], script: &str, scratch: Option<&Scratch>) -> Command {
    let mut command = dacrun(options);
    command.args(["--", "/bin/sh", "-c", script]);
    if let Some(scratch) = scratch {
        command.env("SCRATCH", scratch.path());
    }
    command
}

/// Runs to the end; fails (killing dacrun) if that takes longer than [`QUICK`].
fn run(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dacrun");
    finish(child)
}

/// Collects a started dacrun's output; fails if it runs longer than [`QUICK`].
fn finish(mut child: Child) -> Output {
    let mut stdout = child.stdout.take().expect("dacrun's stdout is piped");
    let mut stderr = child.stderr.take().expect("dacrun's stderr is piped");
    let stdout = std::thread::spawn(move || read_all(&mut stdout));
    let stderr = std::thread::spawn(move || read_all(&mut stderr));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll dacrun") {
            break status;
        }
        if start.elapsed() > QUICK {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dacrun did not finish within {QUICK:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("the stdout reader finishes"),
        stderr: without_key_note(stderr.join().expect("the stderr reader finishes")),
    }
}

/// dacrun's stderr without the line that says where the job key is.
fn without_key_note(stderr: Vec<u8>) -> Vec<u8> {
    let mut kept = Vec::new();
    for line in stderr.split_inclusive(|&b| b == b'\n') {
        let note = line.starts_with(b"dacrun: job key ")
            && line.ends_with(b" (removed when the job ends)\n");
        if !note {
            kept.extend_from_slice(line);
        }
    }
    kept
}

fn read_all(pipe: &mut impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    pipe.read_to_end(&mut bytes).expect("read dacrun's output");
    bytes
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether process `pid` still exists, zombies included (`kill -0` succeeds
/// on them).
fn alive(pid: u32) -> bool {
    Command::new("/bin/sh")
        .args(["-c", &format!("kill -0 {pid} 2>/dev/null")])
        .status()
        .expect("run kill -0")
        .success()
}

/// Every recorded pid is gone (dacrun reaped them before it exited).
fn assert_all_gone(pids: &[u32]) {
    for &pid in pids {
        assert!(!alive(pid), "rank process {pid} outlived dacrun");
    }
}

#[test]
fn every_rank_runs_with_its_rank_and_prefixed_output() {
    let script = r#"test -d "$DAC_RUN_DIR" && echo hello $DAC_RANK $DAC_SIZE;
        echo "dir $DAC_RUN_DIR"; echo "warn $DAC_RANK" >&2"#;
    let output = run(dacrun_sh(&["-n", "3"], script, None));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    for rank in 0..3 {
        assert!(
            stdout.contains(&format!("[{rank}] hello {rank} 3\n")),
            "{stdout}"
        );
        assert!(
            stderr.contains(&format!("[{rank}] warn {rank}\n")),
            "{stderr}"
        );
    }
    assert_eq!(stdout.lines().count(), 6);
    let dirs: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once("] dir "))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(dirs.len(), 3);
    assert!(dirs.iter().all(|d| *d == dirs[0]), "{dirs:?}");
    let run_dir = Path::new(dirs[0]);
    let name = run_dir.file_name().unwrap().to_string_lossy();
    assert!(name.starts_with("dacrun-"), "{name}");
    assert_eq!(run_dir.parent(), Some(std::env::temp_dir().as_path()));
    assert!(!run_dir.exists(), "{} was not removed", run_dir.display());
}

#[test]
fn lines_are_whole_and_bytes_pass_through() {
    let script = r#"printf 'one\ntwo'; printf '\377raw\n' >&2"#;
    let output = run(dacrun_sh(&["--np=1"], script, None));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"[0] one\n[0] two\n");
    assert_eq!(output.stderr, b"[0] \xffraw\n");
}

#[test]
fn a_failing_rank_stops_the_job_with_its_status() {
    let scratch = Scratch::new("fail");
    // Rank 1 fails once the others have started; they would sleep for ages.
    let script = format!(
        r#"if [ $DAC_RANK = 1 ]; then
             while [ ! -e "$SCRATCH/pid-0" ] || [ ! -e "$SCRATCH/pid-2" ]; do sleep 0.02; done
             echo failing >&2; exit 3
           fi
           {RECORD_PID}; exec sleep 1000"#
    );
    let output = run(dacrun_sh(&["-n", "3"], &script, Some(&scratch)));
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("[1] failing\n"), "{stderr}");
    assert!(
        stderr.contains("dacrun: rank 1 exited with status 3\n"),
        "{stderr}"
    );
    let pids = scratch.pids();
    assert_eq!(pids.len(), 2);
    assert_all_gone(&pids);
}

#[test]
fn a_rank_killed_by_a_signal_fails_the_job() {
    let script = r#"if [ $DAC_RANK = 0 ]; then kill -9 $$; fi; exec sleep 1000"#;
    let output = run(dacrun_sh(&["-n", "2"], script, None));
    assert_eq!(output.status.code(), Some(128 + 9));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("dacrun: rank 0 was killed by signal 9"),
        "{stderr}"
    );
}

#[test]
fn the_timeout_kills_every_rank() {
    let scratch = Scratch::new("timeout");
    let script = format!("{RECORD_PID}; exec sleep 1000");
    let output = run(dacrun_sh(
        &["-n", "2", "--timeout", "1"],
        &script,
        Some(&scratch),
    ));
    assert_eq!(output.status.code(), Some(124));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("dacrun: timed out after 1 s\n"), "{stderr}");
    let pids = scratch.pids();
    assert_eq!(pids.len(), 2, "the ranks had a second to start");
    assert_all_gone(&pids);
}

#[test]
fn keep_going_survives_a_killed_rank() {
    let script = r#"if [ $DAC_RANK = 1 ]; then kill -9 $$; fi; sleep 0.3; echo done $DAC_RANK"#;
    let output = run(dacrun_sh(&["-n", "3", "--keep-going"], script, None));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("[0] done 0\n") && stdout.contains("[2] done 2\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("[1]"), "{stdout}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("dacrun: rank 1 was killed by signal 9 (SIGKILL); continuing\n"),
        "{stderr}"
    );
}

#[test]
fn keep_going_exits_with_the_first_exit_status() {
    let script = r#"case $DAC_RANK in
          1) kill -9 $$ ;;
          2) sleep 0.2; exit 5 ;;
        esac
        sleep 0.5; echo done $DAC_RANK"#;
    let output = run(dacrun_sh(&["-n", "3", "--keep-going"], script, None));
    assert_eq!(output.status.code(), Some(5));
    assert!(text(&output.stdout).contains("[0] done 0\n"));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("rank 1 was killed by signal 9"), "{stderr}");
    assert!(
        stderr.contains("dacrun: rank 2 exited with status 5; continuing\n"),
        "{stderr}"
    );
}

/// Starts a job of sleeping ranks, sends `signal` to dacrun once they run,
/// and returns how dacrun ended.
fn interrupt(signal: &str) -> (Output, Scratch) {
    let scratch = Scratch::new(&format!("signal-{signal}"));
    // Each rank is a shell with a child of its own.
    let script = format!("{RECORD_PID}; {CHILD}; wait");
    let mut command = dacrun_sh(&["-n", "3"], &script, Some(&scratch));
    let child: Child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dacrun");
    scratch.wait_for_pids(3);
    while scratch.recorded("child-").len() < 3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let output = finish(child);
    (output, scratch)
}

/// Starts a `sleep` in the background and records its pid as `child-RANK`.
const CHILD: &str = r#"sleep 1000 & echo $! > "$SCRATCH/child-$DAC_RANK""#;

/// Starts a `sleep` that leaves the shell (a double fork: reparented to
/// init, still in the rank's group) and records its pid as `orphan-RANK`.
const ORPHAN: &str = r#"(sleep 1000 & echo $! > "$SCRATCH/orphan-$DAC_RANK")"#;

/// A pid that is neither running nor a zombie.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|end| stat[end + 1..].trim_start().starts_with('Z')),
    }
}

/// The live processes (zombies aside) whose process group is one of
/// `groups`, from `/proc`.
fn in_groups(groups: &[u32]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …"; comm may hold spaces.
        let Some(end) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
        let pgrp = fields.get(2).and_then(|f| f.parse::<u32>().ok());
        if fields.first() != Some(&"Z") && pgrp.is_some_and(|g| groups.contains(&g)) {
            found.push(pid);
        }
    }
    found
}

/// Nothing is left of the job within `within`: neither the ranks, nor the
/// children and orphans they recorded, nor anything else in their process
/// groups (each rank's pid is its group).
fn assert_tree_gone(scratch: &Scratch, within: Duration) {
    let ranks = scratch.pids();
    let mut recorded = ranks.clone();
    recorded.extend(scratch.recorded("child-"));
    recorded.extend(scratch.recorded("orphan-"));
    assert!(recorded.len() > ranks.len(), "no child was recorded");
    let start = Instant::now();
    loop {
        let mut left: Vec<u32> = recorded.iter().copied().filter(|&p| !gone(p)).collect();
        left.extend(in_groups(&ranks));
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() <= within,
            "processes {left:?} of the job survived (ranks {ranks:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_stops_every_rank_and_its_children() {
    let (output, scratch) = interrupt("INT");
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    assert_all_gone(&scratch.pids());
    assert_tree_gone(&scratch, Duration::ZERO);
}

#[test]
fn sigterm_stops_every_rank_and_its_children() {
    let (output, scratch) = interrupt("TERM");
    assert_eq!(output.status.code(), Some(143), "{}", text(&output.stderr));
    assert_tree_gone(&scratch, Duration::ZERO);
}

#[test]
fn sighup_stops_every_rank_and_its_children() {
    let (output, scratch) = interrupt("HUP");
    assert_eq!(output.status.code(), Some(129), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("hung up (SIGHUP)"));
    assert_tree_gone(&scratch, Duration::ZERO);
}

/// A failing rank that leaves an orphan behind (a double fork, reparented
/// to init but still in its group) takes it, and the other ranks' children,
/// with it.
#[test]
fn a_failing_rank_leaves_no_process_of_the_job_behind() {
    let scratch = Scratch::new("tree-fail");
    let script = format!(
        r#"{RECORD_PID}; if [ "$DAC_RANK" = 1 ]; then {ORPHAN}; sleep 0.3; exit 3; fi;
           {CHILD}; wait"#
    );
    let output = run(dacrun_sh(&["-n", "3"], &script, Some(&scratch)));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_tree_gone(&scratch, Duration::ZERO);
}

/// Ranks that exit 0 but leave processes behind: those go when the job ends.
#[test]
fn what_finished_ranks_leave_behind_goes_with_the_job() {
    let scratch = Scratch::new("tree-done");
    let script = format!("{RECORD_PID}; {ORPHAN}; exit 0");
    let output = run(dacrun_sh(&["-n", "2"], &script, Some(&scratch)));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_tree_gone(&scratch, Duration::ZERO);
}

/// dacrun SIGKILLed: its guard kills every rank's group and removes the
/// run directory.
#[test]
fn a_killed_dacrun_leaves_no_process_or_run_directory_behind() {
    let scratch = Scratch::new("tree-kill");
    let script = format!(r#"{RECORD_PID}; echo "$DAC_RUN_DIR" > "$SCRATCH/dir"; {CHILD}; wait"#);
    let mut child = dacrun_sh(&["-n", "3"], &script, Some(&scratch))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dacrun");
    scratch.wait_for_pids(3);
    while scratch.recorded("child-").len() < 3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let run_dir = std::fs::read_to_string(scratch.path().join("dir")).expect("read the run dir");
    child.kill().expect("kill dacrun");
    child.wait().expect("reap dacrun");
    assert_tree_gone(&scratch, Duration::from_secs(5));
    let run_dir = std::path::Path::new(run_dir.trim());
    let start = Instant::now();
    while run_dir.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{run_dir:?} remains"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn options_reach_the_ranks_environment() {
    let scratch = Scratch::new("env");
    std::fs::write(scratch.path().join("key"), "ab".repeat(32)).unwrap();
    let script = r#"echo "$DAC_TOPOLOGY|$DAC_SCHEDULE|$DAC_PEER_TIMEOUT|$DAC_KEY_FILE""#;
    let options = [
        "-n",
        "1",
        "--topology",
        "torus:2x3",
        "--schedule=laplacian:0.1",
        "--peer-timeout",
        "2.5",
        "--key-file",
        "key",
    ];
    let mut command = dacrun_sh(&options, script, None);
    // A relative key file comes out absolute.
    command.current_dir(scratch.path());
    let output = run(command);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let key = scratch.path().join("key");
    let expected = format!("[0] torus:2x3|laplacian:0.1|2.5|{}\n", key.display());
    assert_eq!(text(&output.stdout), expected);
}

#[test]
fn options_not_given_are_unset_even_if_inherited() {
    let script = r#"echo "${DAC_TOPOLOGY-unset} ${DAC_JOB_KEY-unset}""#;
    let mut command = dacrun_sh(&["-n", "1"], script, None);
    command
        .env("DAC_TOPOLOGY", "ring")
        .env("DAC_JOB_KEY", "ab".repeat(32));
    let output = run(command);
    assert_eq!(text(&output.stdout), "[0] unset unset\n");
}

/// `--peer-id FILE` makes an identity file once and prints the same peer
/// id every time.
#[test]
fn peer_id_prints_a_stable_id_of_a_private_identity_file() {
    let scratch = Scratch::new("peer-id");
    let file = scratch.path().join("id");
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let output = run(dacrun(&["--peer-id", file.to_str().expect("a UTF-8 path")]));
            assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
            text(&output.stdout).trim().to_string()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        dac_net::identity(&file)
            .expect("read the identity")
            .to_string(),
        ids[0]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("stat the identity")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Without --key-file every job gets a fresh key of its own, private to
/// this user, in the run directory, whatever was inherited.
#[test]
fn every_job_gets_a_fresh_private_key() {
    let script = r#"stat -c '%a' "$DAC_KEY_FILE"; dirname "$DAC_KEY_FILE"; echo "$DAC_RUN_DIR"; cat "$DAC_KEY_FILE""#;
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let mut command = dacrun_sh(&["-n", "1"], script, None);
            command.env("DAC_KEY_FILE", "/stale");
            let output = run(command);
            assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
            let out = text(&output.stdout);
            let lines: Vec<&str> = out.lines().map(|l| l.trim_start_matches("[0] ")).collect();
            assert_eq!(lines[0], "600", "{out}");
            assert_eq!(
                lines[1], lines[2],
                "the key is not in the run directory: {out}"
            );
            assert!(dac_net::JobKey::parse(lines[3]).is_ok(), "{out}");
            lines[3].to_string()
        })
        .collect();
    assert_ne!(keys[0], keys[1], "two jobs got the same key");
}

#[test]
fn bad_arguments_fail_early_with_one_line() {
    let cases: [&[&str]; 13] = [
        &["-n", "2", "--topology", "moebius", "--", "/bin/true"],
        &["-n", "2", "--schedule", "fast", "--", "/bin/true"],
        &["-n", "0", "--", "/bin/true"],
        &["-n", "2", "--np"],
        &["-n", "2", "--"],
        &["-n", "2", "--timeout", "0", "--", "/bin/true"],
        &["-n", "2", "--key-file", "/no/such/key", "--", "/bin/true"],
        &["-n", "2", "--bogus", "--", "/bin/true"],
        &["/bin/true"],
        &[],
        &["-n", "2", "--", ""],
        &["--peer-id", "id", "-n", "2", "/bin/true"],
        &["--completions", "tcsh"],
    ];
    for argv in cases {
        let output = run(dacrun(argv));
        assert_eq!(output.status.code(), Some(2), "{argv:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("dacrun: "), "{argv:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{argv:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{argv:?}");
    }
}

#[test]
fn unknown_topology_names_the_library_error() {
    let output = run(dacrun(&[
        "-n",
        "2",
        "--topology",
        "moebius",
        "--",
        "/bin/true",
    ]));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(
            "dacrun: invalid value 'moebius' for '--topology <T>': unknown topology \"moebius\""
        ),
        "{stderr}"
    );
}

#[test]
fn a_missing_program_exits_127() {
    let output = run(dacrun(&["-n", "2", "--", "/no/such/program"]));
    assert_eq!(output.status.code(), Some(127));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("dacrun: cannot start /no/such/program: "),
        "{stderr}"
    );
}

#[test]
fn help_prints_usage() {
    let output = run(dacrun(&["--help"]));
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).starts_with("usage: dacrun -n N"));
}

/// `dacrun -n 2 PROGRAM ARGS`, as mpirun takes it, without `--`.
#[test]
fn the_program_may_follow_the_options_without_a_separator() {
    let output = run(dacrun(&["-n", "2", "/bin/sh", "-c", "echo rank $DAC_RANK"]));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for rank in 0..2 {
        assert!(
            stdout.contains(&format!("[{rank}] rank {rank}\n")),
            "{stdout}"
        );
    }
}

/// In the mpirun form everything after the program is the program's own,
/// dacrun's options and `--` included.
#[test]
fn the_programs_arguments_are_its_own_even_when_they_look_like_options() {
    let script = r#"echo "$DAC_RANK:$*""#;
    let argv = [
        "-n",
        "2",
        "/bin/sh",
        "-c",
        script,
        "sh",
        "--keep-going",
        "-n",
        "5",
        "--",
        "--help",
    ];
    let output = run(dacrun(&argv));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for rank in 0..2 {
        assert!(
            stdout.contains(&format!("[{rank}] {rank}:--keep-going -n 5 -- --help\n")),
            "{stdout}"
        );
    }
}

/// More ranks than the open-file limit allows: refused up front (exit 2),
/// saying how many fit; a soft limit below the hard one is raised.
#[test]
fn the_open_file_limit_is_checked_before_anything_starts() {
    let dacrun = env!("CARGO_BIN_EXE_dacrun");
    let refused = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("ulimit -n 64 && exec {dacrun} -n 100 -- /bin/true"),
        ])
        .output()
        .expect("run dacrun under ulimit");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("-n 100 needs about 332 open files")
            && stderr.contains("at most 64")
            && stderr.contains("fits 10 ranks"),
        "{stderr}"
    );
    let raised = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("ulimit -Sn 64 && exec {dacrun} -n 30 -- /bin/true"),
        ])
        .output()
        .expect("run dacrun under a soft ulimit");
    assert_eq!(raised.status.code(), Some(0), "{}", text(&raised.stderr));
}

/// `--help` lists every exit status dacrun can give.
#[test]
fn help_lists_the_exit_statuses() {
    let output = run(dacrun(&["--help"]));
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    let statuses = help
        .split("Exit status:")
        .nth(1)
        .expect("an exit status section");
    for code in [
        "0", "128+K", "124", "130", "143", "129", "127", "126", "2", "125",
    ] {
        assert!(
            statuses
                .split_whitespace()
                .any(|w| w.split('/').any(|c| c == code)),
            "status {code} is missing from:\n{help}"
        );
    }
}
