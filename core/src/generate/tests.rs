//! Tests of the generator: determinism, validity, the traffic mix and the output formats.

use std::collections::HashMap;

use super::*;
use crate::event::{decode_document, AuditEvent, Level, Stage as EventStage};

const SAMPLE: usize = 10_000;

fn options(seed: u64) -> GeneratorOptions {
    GeneratorOptions {
        seed,
        ..GeneratorOptions::default()
    }
}

fn generate(options: GeneratorOptions, count: u64, format: OutputFormat) -> Vec<u8> {
    let mut out = Vec::new();
    Generator::new(options)
        .write_events(count, format, &mut out)
        .unwrap();
    out
}

fn lines(seed: u64, count: usize) -> Vec<String> {
    let mut generator = Generator::new(options(seed));
    (0..count)
        .map(|_| {
            let mut line = String::new();
            generator.next_event(&mut line);
            line
        })
        .collect()
}

fn events(seed: u64, count: usize) -> Vec<AuditEvent> {
    lines(seed, count)
        .iter()
        .map(|line| AuditEvent::parse(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

fn share(events: &[AuditEvent], test: impl Fn(&AuditEvent) -> bool) -> f64 {
    events.iter().filter(|event| test(event)).count() as f64 / events.len() as f64
}

#[test]
fn default_options() {
    let options = GeneratorOptions::default();
    assert_eq!(options.seed, 1);
    assert_eq!(options.start.to_rfc3339(), "2026-01-01T00:00:00+00:00");
    assert_eq!(options.events_per_second, 1000.0);
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let first = generate(options(7), 3_000, OutputFormat::Ndjson);
    let again = generate(options(7), 3_000, OutputFormat::Ndjson);
    let other = generate(options(8), 3_000, OutputFormat::Ndjson);
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn every_event_parses_as_an_audit_event() {
    for (line, event) in lines(3, SAMPLE).iter().zip(events(3, SAMPLE)) {
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(event.as_json(), line);
        let header = event.header();
        assert_eq!(header.api_version(), Some("audit.k8s.io/v1"));
        assert!(header.level().is_some(), "{line}");
        assert!(header.user_agent().is_some(), "{line}");
        assert!(!header.source_ips().is_empty(), "{line}");
        assert!(header.request_uri().starts_with('/'), "{line}");
        assert_uuid_v4(header.audit_id());
        event.to_value().unwrap();
    }
}

fn assert_uuid_v4(id: &str) {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
    assert!(id
        .chars()
        .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(groups[2].starts_with('4'), "{id}");
    assert!("89ab".contains(&groups[3][..1]), "{id}");
}

#[test]
fn timestamps_are_rfc3339_microseconds_in_simulated_time() {
    let start = GeneratorOptions::default().start;
    let mut previous_stage = start;
    for event in events(4, 2_000) {
        let header = event.header();
        let received = header.request_received_timestamp().unwrap();
        let stage = header.stage_timestamp().unwrap();
        for text in [received, stage] {
            assert_eq!(text.len(), "2026-01-01T00:00:00.000000Z".len(), "{text}");
            assert!(text.ends_with('Z'), "{text}");
        }
        let received = DateTime::parse_from_rfc3339(received).unwrap();
        let stage = DateTime::parse_from_rfc3339(stage).unwrap();
        assert!(received <= stage, "{}", event.as_json());
        assert!(stage >= previous_stage, "{}", event.as_json());
        assert!(
            stage - received < chrono::Duration::seconds(2),
            "{}",
            event.as_json()
        );
        previous_stage = stage.with_timezone(&Utc);
    }
    let elapsed = previous_stage - start;
    // 2,000 arrivals at 1,000 per second: about two seconds.
    assert!(elapsed > chrono::Duration::milliseconds(1_700), "{elapsed}");
    assert!(elapsed < chrono::Duration::milliseconds(2_300), "{elapsed}");
}

#[test]
fn the_traffic_density_spaces_the_timestamps() {
    let start = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
    let mut generator = Generator::new(GeneratorOptions {
        seed: 1,
        start,
        events_per_second: 10.0,
        incidents: false,
    });
    let mut last = String::new();
    for _ in 0..100 {
        last.clear();
        generator.next_event(&mut last);
    }
    let event = AuditEvent::parse(&last).unwrap();
    let stage = event.header().stage_timestamp().unwrap();
    let elapsed = DateTime::parse_from_rfc3339(stage)
        .unwrap()
        .with_timezone(&Utc)
        - start;
    assert!(
        elapsed > chrono::Duration::seconds(7) && elapsed < chrono::Duration::seconds(13),
        "{elapsed}"
    );
}

#[test]
fn reads_dominate_the_verbs() {
    let events = events(5, SAMPLE);
    let reads = share(&events, |event| {
        matches!(event.header().verb(), "get" | "list" | "watch")
    });
    assert!(
        (0.75..=0.95).contains(&reads),
        "get/list/watch share {reads}"
    );
    let verbs: HashMap<&str, usize> = events.iter().fold(HashMap::new(), |mut verbs, event| {
        *verbs.entry(event.header().verb()).or_default() += 1;
        verbs
    });
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(
            verbs.get(verb).copied().unwrap_or_default() > 0,
            "no {verb} in {verbs:?}"
        );
    }
}

#[test]
fn levels_bodies_and_managed_fields() {
    let events = events(6, SAMPLE);
    let metadata = share(&events, |event| {
        event.header().level() == Some(Level::Metadata)
    });
    assert!(metadata > 0.8, "Metadata share {metadata}");
    let with_managed_fields = |event: &AuditEvent| {
        event.header().level() == Some(Level::RequestResponse)
            && event.response_object().is_some_and(|body| {
                body.contains(r#""managedFields":[{"manager":"#) && body.contains(r#""fieldsV1":{"#)
            })
    };
    assert!(events.iter().any(with_managed_fields));
    assert!(events
        .iter()
        .any(|event| event.header().level() == Some(Level::Request)
            && event.request_object().is_some()));
    for kind in ["Pod", "ConfigMap", "Secret", "Deployment", "Lease"] {
        let needle = format!(r#"{{"kind":"{kind}","#);
        assert!(
            events.iter().any(|event| event
                .request_object()
                .is_some_and(|body| body.starts_with(&needle))),
            "no {kind} body"
        );
    }
    for event in &events {
        let header = event.header();
        if header.level() == Some(Level::Metadata) {
            assert!(event.request_object().is_none() && event.response_object().is_none());
        }
        if header.level() != Some(Level::RequestResponse) {
            assert!(event.response_object().is_none(), "{}", event.as_json());
        }
    }
}

#[test]
fn secrets_bodies_hold_base64_data() {
    let events = events(7, SAMPLE);
    let secret = events
        .iter()
        .filter_map(|event| event.request_object())
        .find(|body| body.starts_with(r#"{"kind":"Secret","#))
        .expect("a Secret body");
    let value: serde_json::Value = serde_json::from_str(secret).unwrap();
    let data = value["data"].as_object().unwrap();
    assert!(!data.is_empty());
    for text in data.values() {
        let text = text.as_str().unwrap();
        assert_eq!(text.len() % 4, 0, "{text}");
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
    }
}

#[test]
fn statuses_include_failures() {
    let events = events(8, SAMPLE);
    let code = |event: &AuditEvent| event.header().response_code();
    for expected in [200, 201, 101, 401, 403, 404, 409, 422] {
        assert!(
            events.iter().any(|event| code(event) == Some(expected)),
            "no {expected}"
        );
    }
    let failures = share(&events, |event| code(event).is_some_and(|code| code >= 400));
    assert!((0.01..0.1).contains(&failures), "failure share {failures}");
    for event in &events {
        let header = event.header();
        let decision = header.annotation("authorization.k8s.io/decision");
        match code(event) {
            Some(403) => assert_eq!(decision, Some("forbid"), "{}", event.as_json()),
            Some(401) => {
                assert_eq!(decision, None);
                assert_eq!(header.user().username(), "");
            }
            Some(_) => assert_eq!(decision, Some("allow"), "{}", event.as_json()),
            None => assert_eq!(*header.stage(), EventStage::RequestReceived),
        }
    }
}

#[test]
fn non_resource_urls_are_present() {
    let events = events(9, SAMPLE);
    let paths: Vec<&str> = events
        .iter()
        .filter(|event| event.header().object_ref().is_none())
        .map(|event| event.header().request_uri())
        .collect();
    for path in ["/healthz", "/livez", "/readyz", "/metrics", "/version"] {
        assert!(
            paths.iter().any(|uri| uri.split('?').next() == Some(path)),
            "no {path}"
        );
    }
}

#[test]
fn uris_match_object_references() {
    for event in events(10, SAMPLE) {
        let header = event.header();
        let Some(object) = &header.object_ref() else {
            continue;
        };
        let uri = &header.request_uri();
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let resource = object.resource().unwrap();
        let prefix = match object.api_group() {
            None => "/api/v1".to_string(),
            Some(group) => format!("/apis/{group}/{}", object.api_version().unwrap()),
        };
        assert!(path.starts_with(&prefix), "{uri}");
        assert!(path.contains(&format!("/{resource}")), "{uri}");
        if let (Some(namespace), false) = (object.namespace(), resource == "namespaces") {
            assert!(path.contains(&format!("/namespaces/{namespace}/")), "{uri}");
        }
        if let Some(subresource) = object.subresource() {
            assert!(path.ends_with(&format!("/{subresource}")), "{uri}");
        }
        match header.verb() {
            "watch" => {
                assert!(query.starts_with("allowWatchBookmarks=true&"), "{uri}");
                assert!(query.ends_with("&watch=true"), "{uri}");
                assert!(query.contains("&resourceVersion="), "{uri}");
                if let Some(name) = object.name() {
                    assert!(
                        query.contains(&format!("fieldSelector=metadata.name%3D{name}")),
                        "{uri}"
                    );
                }
            }
            "get" | "update" | "patch" | "delete" => {
                let name = object.name().unwrap();
                assert!(path.contains(&format!("/{name}")), "{uri}");
            }
            _ => {}
        }
    }
}

#[test]
fn stages_follow_the_request() {
    let events = events(11, SAMPLE);
    let mut received = 0;
    for (index, event) in events.iter().enumerate() {
        let header = event.header();
        match &header.stage() {
            EventStage::RequestReceived => {
                received += 1;
                assert!(header.response_status().is_none());
                assert!(header.annotations().len() == 0);
                if let Some(next) = events.get(index + 1) {
                    assert_eq!(next.header().audit_id(), header.audit_id());
                    assert_ne!(*next.header().stage(), EventStage::RequestReceived);
                    assert_eq!(
                        next.header().request_received_timestamp(),
                        header.request_received_timestamp()
                    );
                }
            }
            EventStage::ResponseStarted => {
                let code = header.response_code();
                assert!(
                    header.verb() == "watch" || code == Some(101) || code == Some(401),
                    "{}",
                    event.as_json()
                );
            }
            EventStage::ResponseComplete => {
                assert_ne!(header.verb(), "watch", "{}", event.as_json());
            }
            other => panic!("unexpected stage {other:?}"),
        }
    }
    assert!(received > 100, "{received} RequestReceived events");
}

#[test]
fn the_users_are_a_realistic_mix() {
    let events = events(12, SAMPLE);
    let has = |test: &dyn Fn(crate::event::AuditHeader<'_>) -> bool| {
        events.iter().any(|event| test(event.header()))
    };
    assert!(has(
        &|h| h.user().username() == "system:kube-controller-manager"
    ));
    assert!(has(&|h| h.user().username() == "system:kube-scheduler"));
    assert!(has(&|h| h
        .user()
        .username()
        .starts_with("system:node:node-")
        && h.user().groups().contains("system:nodes")));
    assert!(has(&|h| h
        .user()
        .username()
        .starts_with("system:serviceaccount:kube-system:")));
    assert!(has(&|h| h.user().username()
        == "system:serviceaccount:production:web"
        && h.user().uid().is_some()
        && h.user()
            .groups()
            .contains("system:serviceaccounts:production")));
    assert!(has(&|h| h.user().username() == "alice@example.com"));
    assert!(has(&|h| h.user().username() == "system:anonymous"));
    assert!(has(&|h| h.impersonated_user().is_some()));
    assert!(has(&|h| h
        .user_agent()
        .is_some_and(|agent| agent.starts_with("kubelet/v1.31.2"))));
    assert!(has(&|h| h
        .user_agent()
        .is_some_and(|agent| agent.starts_with("kubectl/"))));
    assert!(has(&|h| h
        .annotation("authorization.k8s.io/reason")
        .is_some_and(|reason| reason.starts_with(
            "RBAC: allowed by ClusterRoleBinding \"system:controller:"
        ))));
}

#[test]
fn event_lists_decode_to_the_same_events() {
    let count = 1_000;
    let ndjson = generate(options(13), count, OutputFormat::Ndjson);
    let lists = generate(options(13), count, OutputFormat::EventList);
    let expected: Vec<&str> = std::str::from_utf8(&ndjson).unwrap().lines().collect();
    let documents: Vec<&str> = std::str::from_utf8(&lists).unwrap().lines().collect();
    assert_eq!(documents.len(), 3);
    let mut decoded = Vec::new();
    for document in documents {
        let items = decode_document(document).unwrap();
        assert!(items.len() <= EVENT_LIST_MAX_ITEMS);
        decoded.extend(items.into_iter().map(Result::unwrap));
    }
    assert_eq!(decoded.len(), expected.len());
    for (event, line) in decoded.iter().zip(expected) {
        assert_eq!(event.as_json(), line);
    }
}

#[test]
fn zero_events_write_nothing_and_counts_are_exact() {
    for format in [OutputFormat::Ndjson, OutputFormat::EventList] {
        assert!(generate(options(1), 0, format).is_empty());
    }
    let ndjson = generate(options(1), 401, OutputFormat::Ndjson);
    assert_eq!(ndjson.iter().filter(|&&b| b == b'\n').count(), 401);
    assert!(ndjson.ends_with(b"\n"));
    let lists = generate(options(1), 401, OutputFormat::EventList);
    let documents: Vec<&[u8]> = lists
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(documents.len(), 2);
    assert_eq!(
        decode_document(std::str::from_utf8(documents[1]).unwrap())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn average_event_size_is_about_a_kilobyte() {
    let total: usize = lines(14, SAMPLE).iter().map(String::len).sum();
    let average = total / SAMPLE;
    assert!(
        (700..=1400).contains(&average),
        "average event size {average} bytes"
    );
}

#[test]
fn text_helpers() {
    use text::{base64, InlineStr, Suffix};
    assert_eq!(base64::<16>(b"").as_str(), "");
    assert_eq!(base64::<16>(b"f").as_str(), "Zg==");
    assert_eq!(base64::<16>(b"fo").as_str(), "Zm8=");
    assert_eq!(base64::<16>(b"foo").as_str(), "Zm9v");
    assert_eq!(base64::<16>(b"web").as_str(), "d2Vi");
    assert_eq!(
        base64::<32>(b"admin:s3cr3t!").as_str(),
        "YWRtaW46czNjcjN0IQ=="
    );
    let suffix = InlineStr::<16>::format(format_args!("{}", Suffix { bits: 0, len: 5 }));
    assert_eq!(suffix.as_str(), "bbbbb");
}
