//! The `webhook` source through the real binary: concurrent clients, backpressure
//! with a slow sink, mutual TLS, bearer tokens and hostile input.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::{Client, StatusCode};

/// A running pipeline whose source is a webhook on `port`.
struct Pipeline {
    workspace: Workspace,
    child: Child,
    port: u16,
    api_port: u16,
}

impl Pipeline {
    /// Starts `[sources.hook]` (type webhook, plus `options`) feeding `sinks` (`{dir}` expanded).
    fn start(options: &str, sinks: &str) -> Pipeline {
        let workspace = Workspace::new();
        let (port, api_port) = (free_port(), free_port());
        let config = workspace.config(&format!(
            "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{api_port}\"\n\
             [sources.hook]\ntype = \"webhook\"\naddress = \"127.0.0.1:{port}\"\n{options}\n{sinks}"
        ));
        let child = start_logged(&workspace, &config);
        wait_for_port(port, Duration::from_secs(20));
        Pipeline {
            workspace,
            child,
            port,
            api_port,
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    fn metrics(&self) -> String {
        http_get(self.api_port, "/metrics").map_or_else(String::new, |(_, body)| body)
    }

    /// The `auditID`s a file sink wrote, with how often each was written.
    fn written_ids(&self, file: &str) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for line in self.workspace.json_lines(file) {
            let id = line["auditID"].as_str().unwrap_or_default().to_string();
            *ids.entry(id).or_insert(0) += 1;
        }
        ids
    }

    /// Stops the pipeline with SIGTERM and checks it exits cleanly.
    fn stop(mut self) {
        terminate(&self.child);
        let status = wait_exit(&mut self.child, Duration::from_secs(20));
        let log = std::fs::read_to_string(self.workspace.path("auditflow.log")).unwrap_or_default();
        assert!(status.success(), "auditflow failed: {log}");
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{{"username":"system:admin","groups":["system:masters"]}},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.31.0","objectRef":{{"resource":"pods","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.001000Z"}}"#
    )
}

fn event_list(ids: &[String]) -> Vec<u8> {
    let items: Vec<String> = ids.iter().map(|id| event(id)).collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-e{i}")).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// The answer to one POST: status, `Retry-After`, body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: String,
}

async fn post(client: &Client, url: &str, body: Vec<u8>, gzipped: bool) -> reqwest::Result<Answer> {
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer test-token");
    request = if gzipped {
        request.header("Content-Encoding", "gzip").body(gzip(&body))
    } else {
        request.body(body)
    };
    let response = request.send().await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok());
    let body = response.text().await?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// What a client saw while posting until its request was accepted.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    refused_with_retry_after: usize,
}

/// Posts until the answer is 200, retrying after 429/503 as `Retry-After` says.
async fn post_until_accepted(
    client: &Client,
    url: &str,
    body: Vec<u8>,
    gzipped: bool,
    tally: &Mutex<Tally>,
) {
    loop {
        let answer = post(client, url, body.clone(), gzipped)
            .await
            .expect("the request reaches the server");
        match answer.status {
            StatusCode::OK => {
                tally.lock().expect("tally").accepted += 1;
                return;
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                let seconds = answer
                    .retry_after
                    .expect("a refusal to retry says when: Retry-After");
                tally.lock().expect("tally").refused_with_retry_after += 1;
                tokio::time::sleep(Duration::from_millis(200 * seconds)).await;
            }
            other => panic!("unexpected answer {other}: {}", answer.body),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

const AUTH: &str = "auth = { bearer_token = \"test-token\" }";

#[test]
fn concurrent_clients_have_every_event_delivered_exactly_once() {
    let pipeline = Pipeline::start(
        &format!("max_concurrent_requests = 256\n{AUTH}"),
        "[sinks.out]\ntype = \"file\"\ninputs = [\"hook\"]\npath = \"{dir}/out.ndjson\"",
    );
    let (clients, requests, events) = (200, 2, 100);
    let url = pipeline.url("http");
    let tally = Arc::new(Mutex::new(Tally::default()));
    runtime().block_on(async {
        let client = Client::new();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                for r in 0..requests {
                    let body = event_list(&ids(&format!("c{c}-r{r}"), events));
                    post_until_accepted(&client, &url, body, c % 2 == 1, &tally).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("a client task");
        }
    });
    let written = pipeline.written_ids("out.ndjson");
    assert_eq!(
        written.len(),
        clients * requests * events,
        "distinct events written"
    );
    assert!(
        written.values().all(|&n| n == 1),
        "an event was written twice"
    );
    assert!(written.contains_key("c199-r1-e99") && written.contains_key("c0-r0-e0"));
    assert_eq!(tally.lock().expect("tally").accepted, clients * requests);
    let metrics = pipeline.metrics();
    let accepted = metric(
        &metrics,
        "auditflow_webhook_requests_total",
        &[("code", "200")],
    );
    assert_eq!(accepted, Some((clients * requests) as f64));
    let count = metric(
        &metrics,
        "auditflow_webhook_request_duration_seconds_count",
        &[],
    );
    assert!(
        count.is_some_and(|n| n >= (clients * requests) as f64),
        "{metrics}"
    );
    let bytes = metric(
        &metrics,
        "auditflow_component_received_bytes_total",
        &[("component_id", "hook")],
    );
    assert!(bytes.is_some_and(|b| b > 0.0));
    pipeline.stop();
}

#[test]
fn a_slow_sink_gets_clients_429_with_retry_after_and_keeps_exactly_the_accepted_events() {
    // Every event goes to a file and to a blackhole taking 2,000 events/s, which
    // fills its input: requests are refused (429) rather than queued.
    let pipeline = Pipeline::start(
        &format!("backpressure_wait = \"0s\"\n{AUTH}"),
        "[sinks.out]\ntype = \"file\"\ninputs = [\"hook\"]\npath = \"{dir}/out.ndjson\"\n\
         [sinks.slow]\ntype = \"blackhole\"\ninputs = [\"hook\"]\nrate = 2000",
    );
    let url = pipeline.url("http");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let accepted_once = Arc::new(Mutex::new(HashSet::new()));
    let mut abandoned_refused = 0;
    runtime().block_on(async {
        let client = Client::new();
        let mut tasks = Vec::new();
        for c in 0..30 {
            let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
            let accepted_once = accepted_once.clone();
            tasks.push(tokio::spawn(async move {
                // Posted once and never retried: in the sink only if it got a 200.
                let once = ids(&format!("once-c{c}"), 50);
                let answer = post(&client, &url, event_list(&once), c % 2 == 0).await;
                let answer = answer.expect("the request reaches the server");
                let refused = answer.status != StatusCode::OK;
                if refused {
                    assert_eq!(
                        answer.status,
                        StatusCode::TOO_MANY_REQUESTS,
                        "{}",
                        answer.body
                    );
                    assert_eq!(answer.retry_after, Some(1));
                } else {
                    accepted_once.lock().expect("set").extend(once);
                }
                for r in 0..3 {
                    let body = event_list(&ids(&format!("c{c}-r{r}"), 50));
                    post_until_accepted(&client, &url, body, c % 2 == 1, &tally).await;
                }
                usize::from(refused)
            }));
        }
        for task in tasks {
            abandoned_refused += task.await.expect("a client task");
        }
    });
    let tally = tally.lock().expect("tally");
    assert_eq!(tally.accepted, 90);
    assert!(
        tally.refused_with_retry_after + abandoned_refused > 0,
        "the slow sink never made the source refuse a request"
    );
    let written = pipeline.written_ids("out.ndjson");
    let accepted_once = accepted_once.lock().expect("set");
    let mut expected: HashSet<String> = accepted_once.iter().cloned().collect();
    for c in 0..30 {
        for r in 0..3 {
            expected.extend(ids(&format!("c{c}-r{r}"), 50));
        }
    }
    assert!(
        written.values().all(|&n| n == 1),
        "an event was written twice"
    );
    let written: HashSet<String> = written.into_keys().collect();
    assert_eq!(
        written.len(),
        expected.len(),
        "events written vs events of 200 answers"
    );
    assert!(
        written == expected,
        "the sink holds events no 200 answer covered, or misses some"
    );
    let metrics = pipeline.metrics();
    let refused = metric(
        &metrics,
        "auditflow_webhook_requests_total",
        &[("code", "429")],
    );
    assert!(refused.is_some_and(|n| n > 0.0), "{metrics}");
    pipeline.stop();
}

/// PEM texts of a CA, a server certificate it signed and a client certificate it signed.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_identity: String,
}

fn make_pki(name: &str) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("a signed certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["kube-apiserver".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_identity: format!("{client_key}{client_cert}"),
    }
}

fn tls_client(ca: &str, identity: Option<&str>) -> Client {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM"));
    if let Some(identity) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity PEM"));
    }
    builder.build().expect("a TLS client")
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca() {
    let trusted = make_pki("trusted");
    let rogue = make_pki("rogue");
    let workspace_files = Workspace::new();
    let file = |name: &str, text: &str| {
        let path = workspace_files.path(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path.display().to_string()
    };
    let options = format!(
        "{AUTH}\ntls = {{ crt_file = \"{}\", key_file = \"{}\", client_ca_file = \"{}\" }}",
        file("server.crt", &trusted.server_cert),
        file("server.key", &trusted.server_key),
        file("ca.crt", &trusted.ca)
    );
    let pipeline = Pipeline::start(
        &options,
        "[sinks.out]\ntype = \"file\"\ninputs = [\"hook\"]\npath = \"{dir}/out.ndjson\"",
    );
    let url = pipeline.url("https");
    runtime().block_on(async {
        let without = post(
            &tls_client(&trusted.ca, None),
            &url,
            event_list(&ids("none", 1)),
            false,
        )
        .await;
        assert!(
            without.is_err(),
            "a client without a certificate was served: {without:?}"
        );
        let wrong_ca = tls_client(&trusted.ca, Some(&rogue.client_identity));
        let wrong = post(&wrong_ca, &url, event_list(&ids("rogue", 1)), false).await;
        assert!(
            wrong.is_err(),
            "a certificate of another CA was accepted: {wrong:?}"
        );
        let right = tls_client(&trusted.ca, Some(&trusted.client_identity));
        let answer = post(&right, &url, event_list(&ids("trusted", 3)), true).await;
        assert_eq!(
            answer.expect("the trusted client is served").status,
            StatusCode::OK
        );
    });
    let written = pipeline.written_ids("out.ndjson");
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        ["trusted-e0", "trusted-e1", "trusted-e2"]
    );
    let failures = metric(
        &pipeline.metrics(),
        "auditflow_component_errors_total",
        &[("error_type", "tls_handshake_failed")],
    );
    assert_eq!(failures, Some(2.0));
    pipeline.stop();
}

#[test]
fn a_bearer_token_is_required() {
    let pipeline = Pipeline::start(
        AUTH,
        "[sinks.out]\ntype = \"file\"\ninputs = [\"hook\"]\npath = \"{dir}/out.ndjson\"",
    );
    let url = pipeline.url("http");
    runtime().block_on(async {
        let client = Client::new();
        let body = event_list(&ids("auth", 2));
        for token in [
            None,
            Some("Bearer wrong-token"),
            Some("Bearer test-token-and-more"),
            Some("test-token"),
        ] {
            let mut request = client.post(&url).header("Content-Type", "application/json");
            if let Some(token) = token {
                request = request.header("Authorization", token);
            }
            let response = request.body(body.clone()).send().await.expect("a response");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
        }
        let answer = post(&client, &url, body, false).await.expect("a response");
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    });
    assert_eq!(pipeline.written_ids("out.ndjson").len(), 2);
    pipeline.stop();
}

/// Sends raw bytes and reads the status line of the answer.
fn raw_status(port: u16, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).ok()?;
    String::from_utf8_lossy(answer.get(..read)?)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Trickles header lines into a connection; returns how long until the server closed it.
fn slow_loris(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .ok()?;
    let _ = stream.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\n");
    while started.elapsed() < Duration::from_secs(10) {
        if stream.write_all(b"X-Slow: a\r\n").is_err() {
            return Some(started.elapsed());
        }
        let mut buffer = [0u8; 256];
        match stream.read(&mut buffer) {
            Ok(_) => return Some(started.elapsed()),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn hostile_input_is_refused_without_harm() {
    let pipeline = Pipeline::start(
        &format!("max_body_bytes = 1048576\nheader_read_timeout = \"1s\"\n{AUTH}"),
        "[sinks.out]\ntype = \"file\"\ninputs = [\"hook\"]\npath = \"{dir}/out.ndjson\"\n\
         [sinks.dead]\ntype = \"file\"\ninputs = [\"hook.errors\"]\npath = \"{dir}/errors.ndjson\"",
    );
    let url = pipeline.url("http");
    let rss_before = peak_rss_kib(pipeline.child.id()).expect("the server's peak RSS");
    runtime().block_on(async {
        let client = Client::new();
        let expect = |answer: reqwest::Result<Answer>, status: StatusCode, says: &str| {
            let answer = answer.expect("a response");
            assert_eq!(answer.status, status, "{}", answer.body);
            assert!(
                answer.body.contains(says),
                "the answer `{}` does not say `{says}`",
                answer.body
            );
        };
        // Truncated gzip.
        let whole = gzip(&event_list(&ids("truncated", 100)));
        let truncated = whole.get(..whole.len() / 2).unwrap_or_default().to_vec();
        let answer = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Authorization", "Bearer test-token")
            .body(truncated)
            .send()
            .await
            .expect("a response");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        assert!(answer
            .text()
            .await
            .unwrap_or_default()
            .contains("not valid gzip"));
        // A gzip bomb: 60 KiB on the wire, 256 MiB once decompressed.
        let mut member = GzEncoder::new(Vec::new(), Compression::best());
        member
            .write_all(&vec![0u8; 1024 * 1024])
            .expect("gzip into memory");
        let member = member.finish().expect("gzip into memory");
        let bomb = member.repeat(256);
        assert!(
            bomb.len() < 1024 * 1024,
            "the bomb itself fits max_body_bytes"
        );
        let answer = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Authorization", "Bearer test-token")
            .body(bomb)
            .send()
            .await
            .expect("a response");
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(answer
            .text()
            .await
            .unwrap_or_default()
            .contains("decompresses to more than max_body_bytes"));
        // 10,000-deep JSON.
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes();
        expect(
            post(&client, &url, deep, false).await,
            StatusCode::BAD_REQUEST,
            "nested deeper than",
        );
        // A list with one bad item among good ones: refused whole.
        let mut mixed = ids("mixed", 5);
        mixed[3] = "bad".into();
        let text = String::from_utf8(event_list(&mixed)).unwrap_or_default();
        let text = text.replace(
            r#""auditID":"bad","stage":"ResponseComplete","#,
            r#""auditID":"bad","stage":7,"#,
        );
        expect(
            post(&client, &url, text.into_bytes(), false).await,
            StatusCode::BAD_REQUEST,
            "item 3",
        );
        // Not JSON by its content type.
        let answer = client
            .post(&url)
            .header("Content-Type", "text/plain")
            .header("Authorization", "Bearer test-token")
            .body(event_list(&ids("plain", 1)))
            .send()
            .await
            .expect("a response");
        assert_eq!(answer.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(answer
            .text()
            .await
            .unwrap_or_default()
            .contains("application/json"));
    });
    // A body declared larger than max_body_bytes is refused before it is read.
    let oversized = b"POST / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-token\r\n\
        Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n";
    assert_eq!(raw_status(pipeline.port, oversized), Some(413));
    // Headers trickled in slower than header_read_timeout: the connection is closed.
    let closed_after = slow_loris(pipeline.port).expect("the slow connection was never closed");
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "closed too late: {closed_after:?}"
    );
    let rss_after = peak_rss_kib(pipeline.child.id()).expect("the server's peak RSS");
    assert!(
        rss_after < rss_before + 48 * 1024,
        "peak RSS grew from {rss_before} KiB to {rss_after} KiB: the bomb was expanded"
    );
    // Still serving, and nothing of the refused requests was forwarded.
    runtime().block_on(async {
        let answer = post(&Client::new(), &url, event_list(&ids("after", 2)), true).await;
        assert_eq!(answer.expect("a response").status, StatusCode::OK);
    });
    let written = pipeline.written_ids("out.ndjson");
    assert_eq!(written.keys().collect::<Vec<_>>(), ["after-e0", "after-e1"]);
    wait_for(Duration::from_secs(5), "the errors records", || {
        pipeline.workspace.json_lines("errors.ndjson").len() >= 5
    });
    let errors = pipeline.workspace.json_lines("errors.ndjson");
    let kinds: Vec<String> = errors
        .iter()
        .map(|record| {
            record["error"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(40)
                .collect()
        })
        .collect();
    assert_eq!(
        errors.len(),
        5,
        "one errors record per refused body: {kinds:?}"
    );
    assert!(errors.iter().all(|record| record["component_id"] == "hook"));
    pipeline.stop();
}

#[test]
fn a_failed_delivery_is_answered_503_with_retry_after() {
    // Every write to /dev/full fails (no space left on device).
    let pipeline = Pipeline::start(
        AUTH,
        "[sinks.full]\ntype = \"file\"\ninputs = [\"hook\"]\npath = \"/dev/full\"",
    );
    let url = pipeline.url("http");
    let answer = runtime().block_on(post(
        &Client::new(),
        &url,
        event_list(&ids("lost", 3)),
        false,
    ));
    let answer = answer.expect("a response");
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.retry_after, Some(1));
    assert!(answer.body.contains("could not deliver"), "{}", answer.body);
    let metrics = pipeline.metrics();
    let failed = metric(
        &metrics,
        "auditflow_component_errors_total",
        &[("component_id", "hook"), ("error_type", "delivery_failed")],
    );
    assert_eq!(failed, Some(1.0), "{metrics}");
}
