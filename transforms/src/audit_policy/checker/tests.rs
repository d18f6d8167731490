//! The checker against a table of cases written from the upstream checker's behaviour
//! (`k8s.io/apiserver/pkg/audit/policy/checker.go` and its tests).

use auditflow_core::event::{AuditEvent, Level, Stage};

use super::*;

/// An event of `user` (with `groups`) doing `verb` on `target`: `ns/group/resource/subresource/name`
/// (empty parts for none) or a non-resource URI starting with `/`.
fn event(user: &str, groups: &[&str], verb: &str, target: &str) -> AuditEvent {
    let groups = serde_json::to_string(groups).unwrap();
    let (object_ref, uri) = if target.starts_with('/') && !target.starts_with("//") {
        (String::new(), target.to_string())
    } else {
        let parts: Vec<&str> = target.split('/').collect();
        let [ns, group, resource, sub, name] = parts[..] else {
            panic!("bad target {target}");
        };
        let mut fields = vec![format!(r#""resource":"{resource}""#)];
        let optional = [
            ("namespace", ns),
            ("apiGroup", group),
            ("subresource", sub),
            ("name", name),
        ];
        for (key, value) in optional {
            if !value.is_empty() {
                fields.push(format!(r#""{key}":"{value}""#));
            }
        }
        (
            format!(r#","objectRef":{{{}}}"#, fields.join(",")),
            format!("/api/{resource}"),
        )
    };
    let text = format!(
        r#"{{"auditID":"a","stage":"ResponseComplete","verb":"{verb}","requestURI":"{uri}","user":{{"username":"{user}","groups":{groups}}}{object_ref}}}"#
    );
    AuditEvent::parse(&text).unwrap()
}

fn policy(rules: &str) -> Policy {
    Policy::parse(&format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n{rules}"
    ))
    .unwrap()
}

/// (rule, event, whether it matches)
fn table() -> Vec<(&'static str, AuditEvent, bool)> {
    let alice =
        |verb: &str, target: &str| event("alice", &["dev", "system:authenticated"], verb, target);
    vec![
        // users
        ("users: [alice]", alice("get", "default//pods//p"), true),
        ("users: [bob]", alice("get", "default//pods//p"), false),
        // userGroups: any of the user's groups
        (
            "userGroups: [system:authenticated]",
            alice("get", "/healthz"),
            true,
        ),
        ("userGroups: [ops, dev]", alice("get", "/healthz"), true),
        (
            "userGroups: [system:nodes]",
            alice("get", "/healthz"),
            false,
        ),
        // verbs
        ("verbs: [get, list]", alice("list", "default//pods//"), true),
        (
            "verbs: [get, list]",
            alice("watch", "default//pods//"),
            false,
        ),
        // namespaces; "" is cluster-scoped; resource requests only
        (
            "namespaces: [kube-system]",
            alice("get", "kube-system//pods//p"),
            true,
        ),
        (
            "namespaces: [kube-system]",
            alice("get", "default//pods//p"),
            false,
        ),
        ("namespaces: [\"\"]", alice("get", "//nodes//n1"), true),
        (
            "namespaces: [\"\"]",
            alice("get", "default//pods//p"),
            false,
        ),
        ("namespaces: [kube-system]", alice("get", "/healthz"), false),
        // resources: group, plain, *, subresources
        (
            "resources: [{group: \"\", resources: [pods]}]",
            alice("get", "default//pods//p"),
            true,
        ),
        (
            "resources: [{group: \"\", resources: [pods]}]",
            alice("get", "default//pods/log/p"),
            false,
        ),
        (
            "resources: [{group: \"\", resources: [pods]}]",
            alice("get", "default/apps/deployments//d"),
            false,
        ),
        (
            "resources: [{group: \"\", resources: [pods]}]",
            alice("get", "/api/v1/pods"),
            false,
        ),
        (
            "resources: [{group: apps}]",
            alice("get", "default/apps/deployments//d"),
            true,
        ),
        (
            "resources: [{group: apps}]",
            alice("get", "default/apps/deployments/scale/d"),
            true,
        ),
        (
            "resources: [{group: apps}]",
            alice("get", "default//pods//p"),
            false,
        ),
        (
            "resources: [{group: \"\"}]",
            alice("get", "default//pods/exec/p"),
            true,
        ),
        (
            "resources: [{resources: [\"*\"]}]",
            alice("get", "default//pods/exec/p"),
            true,
        ),
        (
            "resources: [{resources: [\"*\"]}]",
            alice("get", "default/apps/deployments//d"),
            false,
        ),
        (
            "resources: [{resources: [pods/exec]}]",
            alice("create", "default//pods/exec/p"),
            true,
        ),
        (
            "resources: [{resources: [pods/exec]}]",
            alice("create", "default//pods/attach/p"),
            false,
        ),
        (
            "resources: [{resources: [pods/exec]}]",
            alice("get", "default//pods//p"),
            false,
        ),
        (
            "resources: [{group: apps, resources: [\"*/status\"]}]",
            alice("update", "default/apps/deployments/status/d"),
            true,
        ),
        (
            "resources: [{resources: [\"*/status\"]}]",
            alice("update", "default//pods//p"),
            false,
        ),
        (
            "resources: [{resources: [\"*/status\"]}]",
            alice("update", "default//pods/log/p"),
            false,
        ),
        (
            "resources: [{resources: [\"pods/*\"]}]",
            alice("get", "default//pods//p"),
            true,
        ),
        (
            "resources: [{resources: [\"pods/*\"]}]",
            alice("get", "default//pods/log/p"),
            true,
        ),
        (
            "resources: [{resources: [\"pods/*\"]}]",
            alice("get", "default//configmaps//c"),
            false,
        ),
        // resourceNames
        (
            "resources: [{resources: [configmaps], resourceNames: [kube-proxy]}]",
            alice("get", "kube-system//configmaps//kube-proxy"),
            true,
        ),
        (
            "resources: [{resources: [configmaps], resourceNames: [kube-proxy]}]",
            alice("get", "kube-system//configmaps//other"),
            false,
        ),
        (
            "resources: [{resources: [configmaps], resourceNames: [kube-proxy]}]",
            alice("list", "kube-system//configmaps//"),
            false,
        ),
        // several entries: any of them
        (
            "resources: [{group: apps, resources: [deployments]}, {resources: [pods]}]",
            alice("get", "default//pods//p"),
            true,
        ),
        // namespaces and resources together: both must hold
        (
            "namespaces: [kube-system]\n  resources: [{resources: [secrets]}]",
            alice("get", "kube-system//secrets//s"),
            true,
        ),
        (
            "namespaces: [kube-system]\n  resources: [{resources: [secrets]}]",
            alice("get", "default//secrets//s"),
            false,
        ),
        // nonResourceURLs: exact, prefix *, *, non-resource requests only
        (
            "nonResourceURLs: [/healthz]",
            alice("get", "/healthz"),
            true,
        ),
        (
            "nonResourceURLs: [/healthz]",
            alice("get", "/healthz?verbose=1"),
            true,
        ),
        (
            "nonResourceURLs: [/healthz]",
            alice("get", "/healthz/etcd"),
            false,
        ),
        (
            "nonResourceURLs: [\"/healthz*\"]",
            alice("get", "/healthz/etcd"),
            true,
        ),
        (
            "nonResourceURLs: [\"/healthz*\"]",
            alice("get", "/healthzz"),
            true,
        ),
        (
            "nonResourceURLs: [\"/healthz/*\"]",
            alice("get", "/healthz"),
            false,
        ),
        (
            "nonResourceURLs: [\"/metrics\", \"/version\"]",
            alice("get", "/version"),
            true,
        ),
        (
            "nonResourceURLs: [\"*\"]",
            alice("get", "/openapi/v2"),
            true,
        ),
        (
            "nonResourceURLs: [\"*\"]",
            alice("get", "default//pods//p"),
            false,
        ),
        (
            "nonResourceURLs: [/logs%20x]",
            alice("get", "/logs%20x"),
            false,
        ),
        (
            "nonResourceURLs: [\"/logs x\"]",
            alice("get", "/logs%20x"),
            true,
        ),
        // a rule with only a level matches everything
        ("{}", alice("get", "default//pods//p"), true),
        ("{}", alice("get", "/healthz"), true),
        // combined conditions
        (
            "users: [alice]\n  verbs: [get]\n  nonResourceURLs: [/healthz]",
            alice("get", "/healthz"),
            true,
        ),
        (
            "users: [alice]\n  verbs: [post]\n  nonResourceURLs: [/healthz]",
            alice("get", "/healthz"),
            false,
        ),
    ]
}

#[test]
fn every_matching_form_behaves_as_upstream() {
    for (rule, event, expected) in table() {
        let text = if rule == "{}" {
            "- level: Metadata\n".to_string()
        } else {
            format!("- level: Metadata\n  {rule}\n")
        };
        let policy = policy(&text);
        let request = RequestAttributes::of(event.header());
        assert_eq!(
            policy.rules()[0].matches(&request),
            expected,
            "rule `{rule}` on {}",
            event.as_json()
        );
        let decision = policy.decide(&request);
        let (level, index) = if expected {
            (Level::Metadata, Some(0))
        } else {
            (Level::None, None)
        };
        assert_eq!((decision.level, decision.rule), (level, index), "{rule}");
        assert_eq!(
            policy.decide_event(event.header()),
            decision,
            "by sets: {rule}"
        );
        assert_eq!(policy.explain(&request).is_empty(), expected, "{rule}");
    }
}

/// A policy of exactly 64 rules is decided by sets, its last rule included.
#[test]
fn the_sixty_fourth_rule_is_decided_by_sets() {
    let mut rules = "- level: None\n  users: [nobody]\n".repeat(63);
    rules.push_str("- level: Request\n  users: [alice]\n");
    let policy = policy(&rules);
    assert!(policy.sets().is_some());
    let alice = event("alice", &[], "get", "default//pods//p");
    let decision = policy.decide_event(alice.header());
    assert_eq!((decision.level, decision.rule), (Level::Request, Some(63)));
    let bob = event("bob", &[], "get", "default//pods//p");
    assert_eq!(policy.decide_event(bob.header()).rule, None);
}

#[test]
fn the_group_comes_from_an_old_api_version() {
    let text = r#"{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/apis/apps/v1/namespaces/default/deployments","user":{"username":"u"},"objectRef":{"resource":"deployments","namespace":"default","apiVersion":"apps/v1"}}"#;
    let event = AuditEvent::parse(text).unwrap();
    let policy = policy("- level: Request\n  resources: [{group: apps}]\n");
    assert_eq!(
        policy.decide(&RequestAttributes::of(event.header())).level,
        Level::Request
    );
}

#[test]
fn the_first_matching_rule_decides_and_no_match_is_none() {
    let policy = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nomitManagedFields: true\nrules:\n- level: None\n  users: [system:kube-proxy]\n- level: RequestResponse\n  resources: [{resources: [pods/exec]}]\n  omitStages: [Panic]\n  omitManagedFields: false\n- level: Metadata\n  namespaces: [default]\n",
    )
    .unwrap();
    let exec = event("alice", &[], "create", "default//pods/exec/p");
    let decision = policy.decide(&RequestAttributes::of(exec.header()));
    assert_eq!(decision.level, Level::RequestResponse);
    assert_eq!(decision.rule, Some(1));
    assert!(decision.omits(&Stage::RequestReceived));
    assert!(decision.omits(&Stage::Panic));
    assert!(!decision.omits(&Stage::ResponseComplete));
    assert!(
        !decision.omit_managed_fields,
        "the rule overrides the policy"
    );

    let get = event("alice", &[], "get", "default//pods//p");
    let decision = policy.decide(&RequestAttributes::of(get.header()));
    assert_eq!((decision.level, decision.rule), (Level::Metadata, Some(2)));
    assert!(decision.omit_managed_fields, "the policy's default");
    assert!(!decision.omits(&Stage::Panic));

    let proxy = event("system:kube-proxy", &[], "watch", "default//pods//");
    let decision = policy.decide(&RequestAttributes::of(proxy.header()));
    assert_eq!((decision.level, decision.rule), (Level::None, Some(0)));

    let other = event("alice", &[], "get", "/healthz");
    let decision = policy.decide(&RequestAttributes::of(other.header()));
    assert_eq!((decision.level, decision.rule), (Level::None, None));
    assert!(decision.omits(&Stage::RequestReceived));
}

#[test]
fn explain_names_every_failed_condition_of_the_earlier_rules() {
    let policy = policy(
        "- level: None\n  users: [system:kube-proxy]\n  verbs: [watch]\n- level: Request\n  userGroups: [ops]\n  namespaces: [kube-system]\n  resources: [{resources: [secrets]}]\n- level: Metadata\n  nonResourceURLs: [/healthz]\n- level: Metadata\n",
    );
    let get = event("alice", &["dev"], "get", "default//pods//p");
    let request = RequestAttributes::of(get.header());
    let why = policy.explain(&request);
    assert_eq!(
        why,
        vec![
            RuleMismatch {
                rule: 0,
                failed: vec!["users", "verbs"]
            },
            RuleMismatch {
                rule: 1,
                failed: vec!["userGroups", "namespaces", "resources"]
            },
            RuleMismatch {
                rule: 2,
                failed: vec!["nonResourceURLs"]
            },
        ]
    );
    assert_eq!(policy.decide(&request).rule, Some(3));
    assert_eq!(request.describe("verbs"), "get");
    assert_eq!(
        request.describe("resources"),
        "group \"\", resource pods, name \"p\""
    );
    assert_eq!(request.describe("nonResourceURLs"), "a resource request");
}

/// The indexed decision and the decision by sets are the first matching rule, as trying every
/// rule in order gives.
#[test]
fn the_rule_index_and_the_rule_sets_decide_as_trying_every_rule_in_order() {
    let cases = table();
    let rules: Vec<String> = cases
        .iter()
        .map(|(rule, _, _)| match *rule {
            "{}" => "- level: Metadata\n".to_string(),
            rule => format!("- level: Request\n  {rule}\n"),
        })
        .collect();
    let forward = policy(&rules.concat());
    let backward = policy(&rules.iter().rev().cloned().collect::<String>());
    let example = Policy::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.yaml"),
    )
    .unwrap();
    let mut generator = auditflow_core::generate::Generator::new(Default::default());
    let generated: Vec<AuditEvent> = (0..3000)
        .map(|_| {
            let mut line = String::new();
            generator.next_event(&mut line);
            AuditEvent::parse(&line).unwrap()
        })
        .collect();
    // Over 64 rules: decided rule by rule, not by sets.
    let long = policy(&rules.concat().repeat(64 / rules.len() + 1));
    assert!(forward.sets().is_some() && long.sets().is_none());
    let events = cases.iter().map(|(_, event, _)| event).chain(&generated);
    let mut decided = 0;
    for event in events {
        let request = RequestAttributes::of(event.header());
        for policy in [&forward, &backward, &example, &long] {
            let in_order = policy.decide_in_order(&request);
            assert_eq!(policy.decide(&request), in_order, "{}", event.as_json());
            let by_sets = policy.decide_event(event.header());
            assert_eq!(by_sets, in_order, "by sets: {}", event.as_json());
            decided += usize::from(in_order.rule.is_some());
        }
    }
    assert!(decided > 3000, "{decided}");
}
