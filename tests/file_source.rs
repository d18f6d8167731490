//! The `file` source against real files and real processes: rotation (rename,
//! copytruncate, compression), `kill -9`, bad input, permissions, `--once`.
//!
//! The tests write ~1 KB audit events with sequential auditIDs themselves
//! ([`LogWriter`]), run the real binary (file source -> file sink), and count
//! what reached the output by auditID and stage ([`Tally`]).

mod common;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

/// Pads every event to about 1 KB.
const PAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Appends one audit event line with auditID `{prefix}-{n:06}` (and a pad of `pad` bytes).
fn event_line(out: &mut Vec<u8>, prefix: &str, n: u64, pad: &str) {
    let _ = writeln!(
        out,
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{prefix}-{n:06}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{{"username":"system:serviceaccount:kube-system:writer","groups":["system:serviceaccounts","system:authenticated"]}},"sourceIPs":["10.0.0.1"],"userAgent":"writer/1.0","objectRef":{{"resource":"pods","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-11-24T10:15:30.123456Z","stageTimestamp":"2026-11-24T10:15:30.125000Z","annotations":{{"pad":"{pad}"}}}}"#
    );
}

/// `count` events from `first` on, as bytes.
fn events(prefix: &str, first: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 1100);
    for n in first..first + count {
        event_line(&mut out, prefix, n, PAD);
    }
    out
}

/// Writes `audit.log` in a directory the way the kube-apiserver does, rotating on demand.
struct LogWriter {
    dir: PathBuf,
    file: BufWriter<File>,
    next: u64,
    rotations: u32,
    line: Vec<u8>,
}

impl LogWriter {
    fn new(dir: &Path) -> LogWriter {
        fs::create_dir_all(dir).expect("log directory");
        LogWriter {
            dir: dir.to_path_buf(),
            file: BufWriter::with_capacity(1 << 16, append(&dir.join("audit.log"))),
            next: 0,
            rotations: 0,
            line: Vec::with_capacity(2048),
        }
    }

    fn current(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Appends `count` events (buffered; [`LogWriter::flush`] makes them visible).
    fn write(&mut self, count: u64) {
        for _ in 0..count {
            self.line.clear();
            event_line(&mut self.line, "w", self.next, PAD);
            self.file.write_all(&self.line).expect("write audit.log");
            self.next += 1;
        }
    }

    fn flush(&mut self) {
        self.file.flush().expect("flush audit.log");
    }

    /// Appends `count` events 1000 at a time, each thousand flushed then followed by `pause`.
    fn write_paced(&mut self, count: u64, pause: Duration) {
        let mut left = count;
        while left > 0 {
            let now = left.min(1000);
            self.write(now);
            self.flush();
            left -= now;
            std::thread::sleep(pause);
        }
    }

    /// lumberjack: `audit.log` is renamed to a timestamped backup and a new one is created.
    fn rotate_rename(&mut self) -> PathBuf {
        self.flush();
        self.rotations += 1;
        let backup = self.dir.join(format!(
            "audit-2026-11-24T10-{:02}-{:02}.000.log",
            self.rotations / 60,
            self.rotations % 60
        ));
        fs::rename(self.current(), &backup).expect("rotate audit.log");
        self.file = BufWriter::with_capacity(1 << 16, append(&self.current()));
        backup
    }

    /// logrotate's copytruncate: the file is copied to a backup, then truncated in place.
    fn rotate_copytruncate(&mut self) -> PathBuf {
        self.flush();
        self.rotations += 1;
        let backup = self.dir.join(format!("audit-copy-{}.log", self.rotations));
        fs::copy(self.current(), &backup).expect("copy audit.log");
        self.file.get_ref().set_len(0).expect("truncate audit.log");
        backup
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for appending")
}

/// Writes a whole file of events at once.
fn write_file(path: &Path, prefix: &str, first: u64, count: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("directory");
    }
    fs::write(path, events(prefix, first, count)).expect("write events");
}

/// What reached an output file: copies per auditID+stage, read incrementally.
#[derive(Default)]
struct Tally {
    copies: HashMap<String, u32>,
    offset: u64,
    torn: usize,
    lines: usize,
}

impl Tally {
    /// Reads the complete lines added since the last call.
    fn update(&mut self, path: &Path) {
        let Ok(mut file) = File::open(path) else {
            return;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return;
        }
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in bytes[..complete].split(|&b| b == b'\n') {
            if !line.is_empty() {
                self.count(line);
            }
        }
        self.offset += complete as u64;
    }

    fn count(&mut self, line: &[u8]) {
        self.lines += 1;
        let text = String::from_utf8_lossy(line);
        // A line torn by `kill -9` in the middle of a write, had it been left for the next one to run into.
        if !text.starts_with("{\"kind\"") || text.matches("{\"kind\"").count() != 1 {
            self.torn += 1;
            return;
        }
        let (Some(id), Some(stage)) = (field(&text, "auditID"), field(&text, "stage")) else {
            self.torn += 1;
            return;
        };
        *self.copies.entry(format!("{id}/{stage}")).or_default() += 1;
    }

    fn distinct(&self) -> usize {
        self.copies.len()
    }

    fn duplicates(&self) -> usize {
        self.copies.values().map(|&n| n as usize - 1).sum()
    }

    /// The `w-NNNNNN` ids from 0 to `count` that never arrived.
    fn missing(&self, prefix: &str, count: u64) -> Vec<String> {
        self.missing_of(prefix, 0..count)
    }

    /// The ids `{prefix}-NNNNNN` of `numbers` that never arrived.
    fn missing_of(&self, prefix: &str, numbers: impl Iterator<Item = u64>) -> Vec<String> {
        numbers
            .map(|n| format!("{prefix}-{n:06}/ResponseComplete"))
            .filter(|key| !self.copies.contains_key(key))
            .collect()
    }
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = text[start..].find('"')?;
    Some(&text[start..start + end])
}

fn tally(path: &Path) -> Tally {
    let mut tally = Tally::default();
    tally.update(path);
    tally
}

/// `auditflow run` with `args` (e.g. `--once`); stdin closed, output captured.
fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("run")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("run auditflow")
}

fn run_once(config: &Path) -> Output {
    let output = run(config, &["--once"]);
    assert!(
        output.status.success(),
        "auditflow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `auditflow run` in the background, its logs going to a file.
fn start(config: &Path, log: &Path) -> Child {
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(binary())
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start auditflow")
}

/// SIGTERM, then the exit status must be success.
fn stop(mut child: Child) {
    terminate(&child);
    let status = child.wait().expect("wait for auditflow");
    assert!(status.success(), "auditflow exited with {status:?}");
}

fn metrics_of(port: u16) -> String {
    http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

fn delivered(port: u16, sink: &str) -> f64 {
    metric(
        &metrics_of(port),
        "auditflow_component_sent_events_total",
        &[("component_id", sink)],
    )
    .unwrap_or(0.0)
}

fn wait_delivered(port: u16, sink: &str, count: u64, timeout: Duration) {
    wait_for(
        timeout,
        &format!("{count} events delivered to {sink}"),
        || delivered(port, sink) >= count as f64,
    );
}

/// The pipeline of most tests: `in` (file) -> `out` (file), `in.errors` -> `dead` (file).
fn pipeline(workspace: &Workspace, source_options: &str, port: Option<u16>) -> PathBuf {
    let api = port.map_or(String::new(), |port| {
        format!("[api]\naddress = \"127.0.0.1:{port}\"\n")
    });
    workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
{api}
[sources.in]
type = "file"
glob_interval = "100ms"
poll_interval = "20ms"
{source_options}

[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.ndjson"

[sinks.dead]
type = "file"
inputs = ["in.errors"]
path = "{{dir}}/errors.ndjson"
"#
    ))
}

#[test]
fn rotation_storm_delivers_every_event_exactly_once() {
    const TOTAL: u64 = 200_000;
    const FILES: u64 = 40;
    const PER_FILE: u64 = TOTAL / FILES;
    const COPYTRUNCATE: u64 = 20;
    let workspace = Workspace::new();
    let port = free_port();
    let logs = workspace.path("logs");
    let config = pipeline(
        &workspace,
        &format!("include = [\"{}/audit*.log\"]", logs.display()),
        Some(port),
    );
    let mut writer = LogWriter::new(&logs);
    let child = start(&config, &workspace.path("auditflow.log"));
    let started = Instant::now();
    for file in 0..FILES {
        // The copytruncated file holds one event more than the others (so that its
        // size tells it from the file before it), the last one event less.
        let count = match file {
            COPYTRUNCATE => PER_FILE + 1,
            last if last + 1 == FILES => PER_FILE - 1,
            _ => PER_FILE,
        };
        writer.write_paced(count, Duration::from_millis(5));
        if file + 1 == FILES {
            break;
        }
        if file == COPYTRUNCATE {
            // Once the source has read audit.log to its end, copy and truncate it.
            let label = writer.current().display().to_string();
            let size = fs::metadata(writer.current()).expect("audit.log").len() as f64;
            wait_for(
                Duration::from_secs(120),
                "audit.log read to its end",
                || {
                    metric(
                        &metrics_of(port),
                        "auditflow_file_read_offset_bytes",
                        &[("file", &label)],
                    ) == Some(size)
                },
            );
            writer.rotate_copytruncate();
        } else {
            writer.rotate_rename();
        }
    }
    writer.flush();
    wait_delivered(port, "out", TOTAL, Duration::from_secs(180));
    let metrics = metrics_of(port);
    stop(child);
    eprintln!(
        "rotation storm: {TOTAL} events in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.missing("w", TOTAL), Vec::<String>::new());
    assert_eq!(out.duplicates(), 0, "no event is read twice");
    assert_eq!(out.lines, TOTAL as usize);
    assert_eq!(
        fs::read(workspace.path("errors.ndjson")).unwrap_or_default(),
        b""
    );
    let value = |name: &str, labels: &[(&str, &str)]| metric(&metrics, name, labels);
    assert!(value("auditflow_file_rotations_total", &[("kind", "truncate")]) >= Some(1.0));
    assert!(value("auditflow_file_rotations_total", &[("kind", "rename")]) >= Some(1.0));
    assert!(value("auditflow_checkpoint_writes_total", &[]) >= Some(1.0));
    assert!(value("auditflow_files_watched", &[]) >= Some(1.0));
    let current = writer.current().display().to_string();
    let size = fs::metadata(writer.current()).expect("audit.log").len() as f64;
    assert_eq!(
        value("auditflow_file_read_offset_bytes", &[("file", &current)]),
        Some(size)
    );
    assert!(value("auditflow_file_lag_bytes", &[("file", &current)]).is_some());
    let logged = fs::read_to_string(workspace.path("auditflow.log")).unwrap_or_default();
    assert!(logged.contains("audit.log was truncated"), "{logged}");
    assert!(
        logged.contains("holds the content read before as"),
        "{logged}"
    );
}

/// A `file` sink `out` (`{dir}/out.ndjson`) and a `blackhole` sink `pace`
/// capped at `rate` events/s, both reading `input`: the pace holds deliveries
/// down so that a kill lands mid-stream, in debug and release builds alike.
fn paced_sinks(input: &str, rate: u64) -> String {
    format!(
        r#"
[sinks.out]
type = "file"
inputs = ["{input}"]
path = "{{dir}}/out.ndjson"

[sinks.pace]
type = "blackhole"
inputs = ["{input}"]
rate = {rate}
"#
    )
}

#[test]
fn kill_9_three_times_loses_nothing_and_duplicates_only_what_was_in_flight() {
    const TOTAL: u64 = 200_000;
    const PER_FILE: u64 = 5_000;
    const KILLS: usize = 3;
    // The `pace` sink caps deliveries at RATE events/s, so that the bound below holds
    // in release builds too.
    const RATE: u64 = 30_000;
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[sources.in]
type = "file"
include = ["{}/audit*.log"]
glob_interval = "100ms"
poll_interval = "20ms"
checkpoint_interval = "100ms"
{}"#,
        logs.display(),
        paced_sinks("in", RATE)
    ));
    let mut writer = LogWriter::new(&logs);
    writer.flush();
    let writing = std::thread::spawn(move || {
        for file in 0..TOTAL / PER_FILE {
            writer.write_paced(PER_FILE, Duration::from_millis(15));
            match file {
                19 => {
                    writer.rotate_copytruncate();
                }
                39 => {}
                _ => {
                    writer.rotate_rename();
                }
            }
        }
        writer.flush();
    });
    let log = workspace.path("auditflow.log");
    let out_path = workspace.path("out.ndjson");
    // FILE_SOURCE_SEED picks other kill moments (to explore; the default is fixed).
    let seed = std::env::var("FILE_SOURCE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(4);
    let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut child = start(&config, &log);
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(random.gen_range(1_000..4_000)));
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        eprintln!("kill -9 number {}", kill + 1);
        child = start(&config, &log);
    }
    writing.join().expect("writer");
    let mut out = Tally::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while out.distinct() < TOTAL as usize {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let missing = out.missing("w", TOTAL);
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "timed out waiting for every event delivered: {} distinct, {} missing (first: {:?}), {} torn; last lines of the log, newest first:\n{}",
                out.distinct(),
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                out.torn,
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
        out.update(&out_path);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop(child);
    out.update(&out_path);
    assert_eq!(out.missing("w", TOTAL), Vec::<String>::new());
    // What a kill can re-send: the batches in flight (the 8 batches of the slower
    // sink's channel, the one it holds, the one being sent: 10 x 1000 events) and
    // what was delivered since the last checkpoint write (100 ms, plus up to a
    // turn of about 100 ms, at RATE events/s at most).
    let per_kill = 10 * 1000 + RATE as usize / 5;
    eprintln!(
        "after {KILLS} kills: {} duplicates ({} torn lines), bound {}",
        out.duplicates(),
        out.torn,
        KILLS * per_kill
    );
    assert!(out.duplicates() <= KILLS * per_kill);
    // The file sink cuts off a line a kill left unfinished before it writes again.
    assert_eq!(
        out.torn, 0,
        "lines torn by a kill and run into the next one"
    );
}

#[test]
fn a_filter_run_on_the_decoding_threads_loses_nothing_it_keeps_across_kill_9() {
    const TOTAL: u64 = 60_000;
    // The `pace` sink caps deliveries, so that the kill lands mid-stream.
    const RATE: u64 = 20_000;
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    write_file(&logs.join("audit.log"), "w", 0, TOTAL);
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[sources.in]
type = "file"
include = ["{}/audit.log"]
checkpoint_interval = "100ms"

[transforms.even]
type = "filter"
inputs = ["in"]
condition = 'jevt.value[/auditID] endswith "0" or jevt.value[/auditID] endswith "2" or jevt.value[/auditID] endswith "4" or jevt.value[/auditID] endswith "6" or jevt.value[/auditID] endswith "8"'
{}"#,
        logs.display(),
        paced_sinks("even", RATE)
    ));
    let log = workspace.path("auditflow.log");
    let out_path = workspace.path("out.ndjson");
    let mut child = start(&config, &log);
    // Killed once a sixth of the kept events is out, not after a fixed time: on a
    // loaded machine the start-up alone can take a second.
    wait_for(Duration::from_secs(60), "the first kept events", || {
        tally(&out_path).distinct() >= (TOTAL / 12) as usize
    });
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let before_restart = tally(&out_path).distinct();
    let child = start(&config, &log);
    let mut out = Tally::default();
    wait_for(
        Duration::from_secs(120),
        "every kept event delivered",
        || {
            out.update(&out_path);
            out.distinct() >= (TOTAL / 2) as usize
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    stop(child);
    out.update(&out_path);
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("even run on the decoding threads of source `in`"),
        "{logged}"
    );
    assert!(
        before_restart > 0 && before_restart < (TOTAL / 2) as usize,
        "the kill landed mid-stream ({before_restart} delivered before it)"
    );
    assert_eq!(
        out.missing_of("w", (0..TOTAL).step_by(2)),
        Vec::<String>::new()
    );
    assert_eq!(
        out.distinct(),
        (TOTAL / 2) as usize,
        "an odd auditID passed the filter"
    );
    // What the kill can re-send: the batches in flight (10 x 1000 events) and what was
    // delivered since the last checkpoint write (about 200 ms at RATE events/s).
    assert!(out.duplicates() <= 10 * 1000 + RATE as usize / 5);
    assert_eq!(out.torn, 0);
}

#[test]
fn a_backup_compressed_after_rotation_is_never_read_again() {
    let workspace = Workspace::new();
    let port = free_port();
    let logs = workspace.path("logs");
    let base = logs.display();
    let config = pipeline(
        &workspace,
        &format!("include = [\"{base}/audit*.log\", \"{base}/audit*.log.gz\"]"),
        Some(port),
    );
    let mut writer = LogWriter::new(&logs);
    writer.write(3000);
    writer.flush();
    let child = start(&config, &workspace.path("auditflow.log"));
    wait_delivered(port, "out", 3000, Duration::from_secs(60));
    let backup = writer.rotate_rename();
    writer.write(1000);
    writer.flush();
    wait_delivered(port, "out", 4000, Duration::from_secs(60));
    // lumberjack's --audit-log-compress: the backup is gzipped, then removed.
    let compressed = compress(&backup);
    std::thread::sleep(Duration::from_millis(1000));
    writer.write(1000);
    writer.flush();
    wait_delivered(port, "out", 5000, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    stop(child);
    let logged = fs::read_to_string(workspace.path("auditflow.log")).unwrap_or_default();
    let adopted = format!("{} holds the content read before as", compressed.display());
    assert!(logged.contains(&adopted), "{logged}");
    // A restart finds the .gz again and recognises it from the checkpoints.
    run_once(&config);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.missing("w", 5000), Vec::<String>::new());
    assert_eq!(out.duplicates(), 0);
    assert_eq!(out.lines, 5000);
}

#[test]
fn a_compressed_backup_never_read_is_decompressed_when_include_matches_it() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    fs::create_dir_all(&logs).expect("logs");
    let mut encoder = flate2::write::GzEncoder::new(
        File::create(logs.join("audit-2026-11-24T09-00-00.000.log.gz")).expect("create"),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(&events("old", 0, 2000))
        .expect("compress");
    encoder.finish().expect("finish");
    write_file(&logs.join("audit.log"), "new", 0, 1000);
    let base = logs.display();
    let plain_only = pipeline(
        &workspace,
        &format!("include = [\"{base}/audit*.log\"]"),
        None,
    );
    run_once(&plain_only);
    assert_eq!(tally(&workspace.path("out.ndjson")).lines, 1000);
    let with_gz = pipeline(
        &workspace,
        &format!("include = [\"{base}/audit*.log\", \"{base}/*.gz\"]"),
        None,
    );
    run_once(&with_gz);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.missing("old", 2000), Vec::<String>::new());
    assert_eq!(out.missing("new", 1000), Vec::<String>::new());
    assert_eq!(out.lines, 3000);
}

#[test]
fn read_from_end_applies_only_to_files_found_at_the_very_first_start() {
    let workspace = Workspace::new();
    let port = free_port();
    let logs = workspace.path("logs");
    let current = logs.join("audit.log");
    write_file(&current, "old", 0, 1000);
    let config = pipeline(
        &workspace,
        &format!(
            "include = [\"{}/audit*.log\"]\nread_from = \"end\"",
            logs.display()
        ),
        Some(port),
    );
    let child = start(&config, &workspace.path("auditflow.log"));
    let size = fs::metadata(&current).expect("size").len() as f64;
    let label = current.display().to_string();
    wait_for(
        Duration::from_secs(30),
        "audit.log watched from its end",
        || {
            metric(
                &metrics_of(port),
                "auditflow_file_read_offset_bytes",
                &[("file", &label)],
            ) == Some(size)
        },
    );
    let mut file = append(&current);
    file.write_all(&events("live", 0, 500)).expect("append");
    wait_delivered(port, "out", 500, Duration::from_secs(30));
    stop(child);
    // While stopped: more lines, and a new file; both are read from where they begin.
    file.write_all(&events("later", 0, 200)).expect("append");
    write_file(&logs.join("audit-new.log"), "newfile", 0, 300);
    run_once(&config);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.lines, 1000);
    assert_eq!(out.missing("live", 500), Vec::<String>::new());
    assert_eq!(out.missing("later", 200), Vec::<String>::new());
    assert_eq!(out.missing("newfile", 300), Vec::<String>::new());
    assert_eq!(out.missing("old", 1000).len(), 1000);
}

#[test]
fn a_partial_last_line_waits_for_its_newline() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    let current = logs.join("audit.log");
    let mut bytes = events("p", 0, 10);
    let last = events("p", 10, 1);
    let (head, tail) = last.split_at(400);
    bytes.extend_from_slice(head);
    write_file(&current, "p", 0, 0);
    fs::write(&current, &bytes).expect("write");
    let config = pipeline(
        &workspace,
        &format!("include = [\"{}/audit.log\"]", logs.display()),
        None,
    );
    let output = run_once(&config);
    assert_eq!(tally(&workspace.path("out.ndjson")).lines, 10);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unfinished line of 400 bytes"), "{stderr}");
    append(&current).write_all(tail).expect("finish the line");
    run_once(&config);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.lines, 11);
    assert_eq!(out.missing("p", 11), Vec::<String>::new());
    assert_eq!(
        fs::read(workspace.path("errors.ndjson")).unwrap_or_default(),
        b""
    );
}

#[test]
fn a_line_longer_than_max_line_bytes_becomes_an_error_record_and_the_rest_is_read() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    let current = logs.join("audit.log");
    let mut bytes = events("a", 0, 5);
    let huge = "x".repeat(100_000);
    event_line(&mut bytes, "huge", 0, &huge);
    bytes.extend_from_slice(&events("b", 0, 5));
    fs::create_dir_all(&logs).expect("logs");
    fs::write(&current, &bytes).expect("write");
    let config = pipeline(
        &workspace,
        &format!(
            "include = [\"{}/audit.log\"]\nmax_line_bytes = 4096",
            logs.display()
        ),
        None,
    );
    run_once(&config);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.lines, 10);
    assert_eq!(out.missing("b", 5), Vec::<String>::new());
    let errors = workspace.json_lines("errors.ndjson");
    assert_eq!(errors.len(), 1);
    let error = errors[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&current.display().to_string()), "{error}");
    assert!(error.contains("longer than max_line_bytes"), "{error}");
}

#[test]
fn invalid_utf8_becomes_an_error_record_naming_the_file() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    let current = logs.join("audit.log");
    let mut bytes = events("a", 0, 3);
    bytes.extend_from_slice(b"{\"auditID\":\"bad\xff\xfe\",\"stage\":\"ResponseComplete\"}\n");
    bytes.extend_from_slice(&events("b", 0, 3));
    fs::create_dir_all(&logs).expect("logs");
    fs::write(&current, &bytes).expect("write");
    let config = pipeline(
        &workspace,
        &format!("include = [\"{}/audit.log\"]", logs.display()),
        None,
    );
    run_once(&config);
    assert_eq!(tally(&workspace.path("out.ndjson")).lines, 6);
    let errors = workspace.json_lines("errors.ndjson");
    assert_eq!(errors.len(), 1);
    let error = errors[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("invalid UTF-8"), "{error}");
    assert!(error.contains(&current.display().to_string()), "{error}");
}

#[test]
fn a_file_deleted_while_it_is_read_is_read_to_its_end() {
    const COUNT: u64 = 30_000;
    let workspace = Workspace::new();
    let port = free_port();
    let logs = workspace.path("logs");
    let current = logs.join("audit.log");
    write_file(&current, "d", 0, COUNT);
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[api]
address = "127.0.0.1:{port}"
[sources.in]
type = "file"
include = ["{}"]
glob_interval = "100ms"
[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.ndjson"
[sinks.slow]
type = "blackhole"
inputs = ["in"]
rate = 10000
"#,
        current.display()
    ));
    let log = workspace.path("auditflow.log");
    let child = start(&config, &log);
    wait_delivered(port, "out", 1000, Duration::from_secs(30));
    fs::remove_file(&current).expect("delete audit.log");
    assert!(
        delivered(port, "out") < COUNT as f64 / 2.0,
        "deleted too late"
    );
    wait_delivered(port, "out", COUNT, Duration::from_secs(60));
    wait_for(Duration::from_secs(10), "the deleted file closed", || {
        metric(&metrics_of(port), "auditflow_files_watched", &[]) == Some(0.0)
    });
    stop(child);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.missing("d", COUNT), Vec::<String>::new());
    assert_eq!(out.lines, COUNT as usize);
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("was deleted"), "{logged}");
}

#[test]
fn a_directory_without_permission_is_reported_and_the_rest_is_read() {
    let workspace = Workspace::new();
    let root = workspace.dir.path();
    let (open_dir, locked) = (root.join("open"), root.join("locked"));
    write_file(&open_dir.join("audit.log"), "ok", 0, 100);
    write_file(&locked.join("audit.log"), "hidden", 0, 100);
    let state = root.join("state");
    fs::create_dir_all(&state).expect("state");
    for (path, mode) in [(root, 0o755), (&state, 0o777), (&locked, 0o000)] {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let config = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/state/data"
[sources.in]
type = "file"
include = ["{}/*.log", "{}/*.log"]
[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/state/out.ndjson"
"#,
        open_dir.display(),
        locked.display()
    ));
    // Root ignores permissions: run auditflow as `nobody` when the tests run as root.
    let mut command = if is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", binary()]);
        command
    } else {
        Command::new(binary())
    };
    let output = command
        .args(["run", "--once", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run auditflow");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let out = tally(&state.join("out.ndjson"));
    assert_eq!(out.lines, 100);
    assert_eq!(out.missing("ok", 100), Vec::<String>::new());
    let expected = format!("cannot look into {}", locked.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

#[test]
fn once_ends_when_every_file_is_read_and_saves_the_checkpoints() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    write_file(&logs.join("audit.log"), "a", 0, 1500);
    write_file(
        &logs.join("audit-2026-11-24T10-00-00.000.log"),
        "b",
        0,
        2500,
    );
    write_file(&logs.join("other.txt"), "c", 0, 10);
    let config = pipeline(
        &workspace,
        &format!(
            "include = [\"{}/*\"]\nexclude = [\"{}/*.txt\"]",
            logs.display(),
            logs.display()
        ),
        None,
    );
    let started = Instant::now();
    run_once(&config);
    assert!(started.elapsed() < Duration::from_secs(30));
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.lines, 4000);
    assert_eq!(out.missing("a", 1500), Vec::<String>::new());
    assert_eq!(out.missing("b", 2500), Vec::<String>::new());
    let saved: serde_json::Value = serde_json::from_slice(
        &fs::read(workspace.path("data/in/checkpoints.json")).expect("checkpoints"),
    )
    .expect("checkpoints are JSON");
    let mut offsets: Vec<u64> = saved["checkpoints"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|checkpoint| checkpoint["offset"].as_u64())
        .collect();
    offsets.sort_unstable();
    let mut sizes: Vec<u64> = ["audit.log", "audit-2026-11-24T10-00-00.000.log"]
        .iter()
        .map(|name| fs::metadata(logs.join(name)).expect("size").len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(offsets, sizes);
    // Nothing new: a second run reads nothing and ends at once.
    run_once(&config);
    assert_eq!(tally(&workspace.path("out.ndjson")).lines, 4000);
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    write_file(&logs.join("audit.log"), "a", 0, 10);
    let config = pipeline(
        &workspace,
        &format!("include = [\"{}/audit.log\"]", logs.display()),
        None,
    );
    let log = workspace.path("auditflow.log");
    let first = start(&config, &log);
    wait_for(Duration::from_secs(30), "the first process reading", || {
        tally(&workspace.path("out.ndjson")).lines == 10
    });
    let second = run(&config, &[]);
    stop(first);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("locked by another running auditflow"),
        "{stderr}"
    );
}

#[test]
fn a_failed_delivery_is_read_again_from_the_committed_offset() {
    const COUNT: u64 = 5_000;
    let workspace = Workspace::new();
    let port = free_port();
    let logs = workspace.path("logs");
    write_file(&logs.join("audit.log"), "f", 0, COUNT);
    // The sink writes to /dev/full (every write fails) until the link is replaced.
    let out = workspace.path("out.ndjson");
    std::os::unix::fs::symlink("/dev/full", &out).expect("symlink");
    let config = pipeline(
        &workspace,
        &format!("include = [\"{}/audit.log\"]", logs.display()),
        Some(port),
    );
    let log = workspace.path("auditflow.log");
    let child = start(&config, &log);
    wait_for(Duration::from_secs(30), "a failed delivery", || {
        metric(
            &metrics_of(port),
            "auditflow_component_errors_total",
            &[("component_id", "in"), ("error_type", "delivery_failed")],
        ) >= Some(1.0)
    });
    fs::remove_file(&out).expect("remove the link");
    File::create(&out).expect("a real output file");
    let mut tally = Tally::default();
    wait_for(Duration::from_secs(60), "every event delivered", || {
        tally.update(&out);
        tally.distinct() == COUNT as usize
    });
    stop(child);
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("were not delivered; reading them again"),
        "{logged}"
    );
    assert_eq!(tally.missing("f", COUNT), Vec::<String>::new());
}

#[test]
fn a_slow_sink_holds_up_the_file_source_and_sigterm_saves_what_was_delivered() {
    const COUNT: u64 = 100_000;
    let workspace = Workspace::new();
    let port = free_port();
    let logs = workspace.path("logs");
    write_file(&logs.join("audit.log"), "s", 0, COUNT);
    let source = format!(
        "[sources.in]\ntype = \"file\"\ninclude = [\"{}/audit.log\"]\n",
        logs.display()
    );
    let slow = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
[api]
address = "127.0.0.1:{port}"
{source}
[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.ndjson"
[sinks.slow]
type = "blackhole"
inputs = ["in"]
rate = 5000
"#
    ));
    let child = start(&slow, &workspace.path("auditflow.log"));
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(4));
    let metrics = metrics_of(port);
    let peak_kib = peak_rss_kib(pid).expect("peak memory");
    stop(child);
    // The backlog (100 MB) stays in the file: the source reads only what the slow
    // sink lets through, plus the bounded channels.
    let label = logs.join("audit.log").display().to_string();
    let read = metric(
        &metrics,
        "auditflow_file_read_offset_bytes",
        &[("file", &label)],
    )
    .expect("read offset");
    let lag = metric(&metrics, "auditflow_file_lag_bytes", &[("file", &label)]).expect("lag");
    let size = fs::metadata(logs.join("audit.log")).expect("size").len() as f64;
    assert!(read < size / 2.0, "read {read} of {size} bytes");
    assert!(lag > size / 2.0, "lag {lag}");
    assert!(peak_kib < 200 * 1024, "peak memory {peak_kib} KiB");
    // SIGTERM waited for the deliveries in flight and saved them: a run without
    // the slow sink reads on from there, and nothing is delivered twice.
    let after = tally(&workspace.path("out.ndjson"));
    assert!(after.lines > 0 && after.lines < COUNT as usize);
    let fast = workspace.config(&format!(
        r#"
data_dir = "{{dir}}/data"
{source}
[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.ndjson"
"#
    ));
    run_once(&fast);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.missing("s", COUNT), Vec::<String>::new());
    assert_eq!(out.duplicates(), 0);
}

/// Compresses `path` to `path.gz` and removes it, as lumberjack's `--audit-log-compress` does.
fn compress(path: &Path) -> PathBuf {
    let compressed = PathBuf::from(format!("{}.gz", path.display()));
    let mut encoder = flate2::write::GzEncoder::new(
        File::create(&compressed).expect("create .gz"),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(&fs::read(path).expect("read the backup"))
        .expect("compress");
    encoder.finish().expect("finish .gz");
    fs::remove_file(path).expect("remove the backup");
    compressed
}

#[test]
fn a_backup_rotated_and_compressed_while_stopped_is_read_from_where_it_was_left() {
    let workspace = Workspace::new();
    let logs = workspace.path("logs");
    let base = logs.display();
    let config = pipeline(
        &workspace,
        &format!("include = [\"{base}/audit*.log\", \"{base}/audit*.log.gz\"]"),
        None,
    );
    let mut writer = LogWriter::new(&logs);
    writer.write(3000);
    writer.flush();
    run_once(&config);
    // While auditflow is stopped: 1000 more events, rotation, compression, 500 more.
    writer.write(1000);
    let backup = writer.rotate_rename();
    compress(&backup);
    writer.write(500);
    writer.flush();
    let output = run_once(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let out = tally(&workspace.path("out.ndjson"));
    assert_eq!(out.missing("w", 4500), Vec::<String>::new());
    assert_eq!(out.duplicates(), 0, "{stderr}");
    assert_eq!(out.lines, 4500);
    assert!(
        stderr.contains("holds the content read before as"),
        "{stderr}"
    );
}

#[test]
fn an_include_that_matches_nothing_is_reported_once() {
    let workspace = Workspace::new();
    let config = pipeline(
        &workspace,
        &format!(
            "include = [\"{}/nowhere/*.log\"]",
            workspace.dir.path().display()
        ),
        None,
    );
    let output = run_once(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("matches no file yet").count(), 1, "{stderr}");
    assert!(stderr.contains("nowhere/*.log"), "{stderr}");
}
