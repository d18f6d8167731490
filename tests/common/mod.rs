//! Shared helpers of the integration tests: run the real `auditflow` binary on a
//! configuration in a temporary directory, feed it, and read what it wrote.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod free_port;
pub mod kafka;
pub mod opensearch;
pub use free_port::free_port;

/// Runs the binary with `args`, feeding `input` on stdin; returns its output.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start auditflow");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for auditflow");
    writer.join().expect("writer thread");
    output
}

/// The standard output of a run that must have succeeded (else its stderr is shown).
pub fn success_stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_auditflow")
}

/// The shared conformance data (Falco's traces and rules), beside the repository.
pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/falco")
}

/// Falco's audit traces, one document a line, in file name order.
pub fn falco_traces() -> String {
    let mut input = String::new();
    let dir = conformance_dir().join("traces");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("traces")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        input.push_str(&std::fs::read_to_string(file).expect("trace"));
        input.push('\n');
    }
    input
}

/// The repository root (where `examples/` is).
pub fn repository_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory holding one test's configuration, data and outputs.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `pipeline.toml`, with `{dir}` replaced by the workspace directory.
    pub fn config(&self, text: &str) -> PathBuf {
        let path = self.path("pipeline.toml");
        let text = text.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Writes a pipeline of a `stdin` source `in` feeding `sinks` (TOML, `{dir}`
    /// expanded), with its data in the workspace and its API on a free port.
    pub fn stdin_pipeline_with_api(&self, sinks: &str) -> (PathBuf, u16) {
        let port = free_port();
        let config = self.config(&format!(
            "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n[sources.in]\ntype = \"stdin\"\n{sinks}"
        ));
        (config, port)
    }

    /// Runs `auditflow run --once` with `input` on stdin; returns its output.
    pub fn run_once(&self, config: &Path, input: &[u8]) -> Output {
        let config = config.display().to_string();
        run_with_stdin(&["run", "--once", "--config", &config], input)
    }

    /// Starts `auditflow run` (without `--once`) with a piped stdin.
    pub fn start(&self, config: &Path) -> Child {
        Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start auditflow")
    }

    /// The lines of a file the pipeline wrote, parsed as JSON.
    pub fn json_lines(&self, name: &str) -> Vec<serde_json::Value> {
        read_json_lines(&self.path(name))
    }
}

pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).expect("the sink wrote a JSON line"))
        .collect()
}

/// The complete lines of a file (a last line cut short by a kill is left out).
pub fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or(0, |end| end + 1);
    text[..complete].lines().map(str::to_string).collect()
}

/// Runs `auditflow run --once --config CONFIG` with stdin closed; panics with its stderr if it fails.
pub fn run_once_ok(config: &Path) {
    let output = Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("run auditflow");
    assert!(
        output.status.success(),
        "auditflow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `auditflow generate` and returns its output.
pub fn generate(args: &[&str]) -> Vec<u8> {
    let output = Command::new(binary())
        .arg("generate")
        .args(args)
        .output()
        .expect("run generate");
    assert!(
        output.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A plain HTTP/1.1 GET; returns the status code and body (waits up to 30 s: a loaded machine answers late).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Waits until `check` holds, or panics after `timeout` with `what`.
pub fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The value of a metric sample whose line starts with `prefix` (name and labels).
pub fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let matches = series.starts_with(name)
            && series[name.len()..].starts_with('{')
            && labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
        if matches {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// How many events component `id` has sent on its default output (a sink:
/// delivered), read from the `/metrics` of the pipeline whose API is on `port`; 0 when it does not answer.
pub fn delivered(port: u16, id: &str) -> f64 {
    let metrics = http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    metric(
        &metrics,
        "auditflow_component_sent_events_total",
        &[("component_id", id), ("output", "_default")],
    )
    .unwrap_or_default()
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// The peak resident memory of a process, in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits for a child to exit; kills it and panics if it has not within `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("auditflow did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `auditflow run` with its logs written to `auditflow.log` in the workspace
/// (a server that logs much never blocks on a full pipe).
pub fn start_logged(workspace: &Workspace, config: &Path) -> Child {
    start_logged_as(workspace, config, "auditflow")
}

/// [`start_logged`] with the logs in `NAME.log` (for a test that runs several processes).
pub fn start_logged_as(workspace: &Workspace, config: &Path, name: &str) -> Child {
    let log =
        std::fs::File::create(workspace.path(&format!("{name}.log"))).expect("create the log file");
    Command::new(binary())
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start auditflow")
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    wait_for(timeout, &format!("a server on port {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Runs `scripts/services.sh ACTION SERVER` (an outage test stops and starts a server).
pub fn services(action: &str, server: &str) {
    let status = Command::new("scripts/services.sh")
        .args([action, server])
        .current_dir(repository_dir())
        .status()
        .expect("run scripts/services.sh");
    assert!(
        status.success(),
        "scripts/services.sh {action} {server} failed"
    );
}

/// Kills an auditflow process the test stops before stopping it (a failed assertion).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server the test stopped again if the test stops before it does.
pub struct RestartOnDrop {
    server: &'static str,
    stopped: bool,
}

impl RestartOnDrop {
    /// A guard for `server`, which the caller is about to stop.
    pub fn new(server: &'static str) -> RestartOnDrop {
        RestartOnDrop {
            server,
            stopped: true,
        }
    }

    /// Starts the server now (and not again on drop).
    pub fn start_now(&mut self) {
        services("start", self.server);
        self.stopped = false;
    }
}

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.stopped {
            services("start", self.server);
        }
    }
}

/// Runs the default pipeline (`pipeline.toml`: the bundled sample, its
/// detection and its local store `store`) once in the workspace, with
/// `extra_sinks` (TOML) added; returns its configuration's path.
pub fn run_default_pipeline_with(workspace: &Workspace, extra_sinks: &str) -> PathBuf {
    let repository = repository_dir();
    let default =
        std::fs::read_to_string(repository.join("pipeline.toml")).expect("the default pipeline");
    let data_dir = workspace.path("data");
    let config = default
        .replace(
            "data_dir = \"./data\"",
            &format!("data_dir = \"{}\"", data_dir.display()),
        )
        .replace(
            "${AUDITFLOW_API_ADDRESS:-127.0.0.1:8686}",
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(
            "./data/errors.ndjson",
            &data_dir.join("errors.ndjson").display().to_string(),
        )
        .replace("examples/", &format!("{}/examples/", repository.display()))
        + "\n"
        + extra_sinks;
    let path = workspace.path("pipeline.toml");
    std::fs::write(&path, config).expect("write the pipeline");
    let status = Command::new(binary())
        .args(["run", "--once", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run the pipeline");
    assert!(status.success(), "the default pipeline failed");
    path
}

/// The README's questions (and a few more) to ask two stores of the default pipeline.
pub const README_QUESTIONS: [&[&str]; 5] = [
    &[
        "--verb",
        "delete",
        "--namespace",
        "production",
        "--since",
        "48h",
    ],
    &["--alerts", "--since", "48h", "--group-by", "rule"],
    &["--alerts", "--since", "48h"],
    &["--since", "48h", "--verb", "delete", "--group-by", "user"],
    &["--count", "--resource", "secrets"],
];

/// Asks each question of the store sinks `local` and `other` of `config`;
/// panics with a diff where they answer differently.
pub fn assert_stores_answer_alike(
    workspace: &Workspace,
    config: &Path,
    local: &str,
    other: &str,
    questions: &[&[&str]],
) {
    let config = config.display().to_string();
    for question in questions {
        let ask = |store: &str| {
            let mut args = vec!["query", "--config", config.as_str(), "--store", store];
            args.extend_from_slice(question);
            let output = Command::new(binary())
                .args(&args)
                .output()
                .expect("run auditflow query");
            assert!(
                output.status.success(),
                "{question:?} of {store}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let expected = ask(local);
        assert!(
            expected.lines().count() > 1 || question.contains(&"--count"),
            "{question:?}: {expected}"
        );
        let answered = ask(other);
        if answered != expected {
            let (left, right) = (
                workspace.path("expected.txt"),
                workspace.path("answered.txt"),
            );
            std::fs::write(&left, &expected).expect("write");
            std::fs::write(&right, &answered).expect("write");
            let diff = Command::new("diff")
                .arg(&left)
                .arg(&right)
                .output()
                .expect("run diff");
            panic!(
                "{question:?}: {local} and {other} answer differently:\n{}",
                String::from_utf8_lossy(&diff.stdout)
            );
        }
    }
}

/// Appends `input` to the file at `path` `lines` lines at a time, `pause`
/// apart, on a thread of its own (an apiserver writing its audit log).
pub fn append_in_chunks(
    path: PathBuf,
    input: &[u8],
    lines: usize,
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    let chunks: Vec<Vec<u8>> = input
        .split_inclusive(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .chunks(lines)
        .map(|chunk| chunk.concat())
        .collect();
    std::thread::spawn(move || {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open the log");
        for chunk in chunks {
            log.write_all(&chunk).expect("append to the log");
            std::thread::sleep(pause);
        }
    })
}
