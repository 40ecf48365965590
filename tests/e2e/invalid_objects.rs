//! Plausible user mistakes, each rejected by exactly one schema or CEL rule whose message says what to do.

use serde_json::{Value, json};

use crate::support::admit;

fn avaya_sub() -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": "agent-events", "namespace": "default"},
        "spec": {
            "providerRef": {"name": "avaya"},
            "endpoint": "https://hooks.example.com/avaya",
            "avaya": {
                "families": ["AGENT"], "events": ["Agent.LoggedIn"],
                "authToken": {"secretKeyRef": {"name": "avaya-webhook-token", "key": "token"}}
            }
        }
    })
}

fn vonage_sub() -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": "presence", "namespace": "default"},
        "spec": {
            "providerRef": {"kind": "ClusterWebhookProvider", "name": "vonage"},
            "endpoint": "https://hooks.example.com/vonage",
            "vonage": {"events": ["agent.presencechanged.v1"],
                       "signingSecret": {"secretKeyRef": {"name": "s", "key": "secret"}, "generate": true}}
        }
    })
}

fn authvia_sub() -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": "WebhookSubscription",
        "metadata": {"name": "payments", "namespace": "default"},
        "spec": {
            "providerRef": {"name": "authvia"},
            "endpoint": "https://hooks.example.com/authvia",
            "authvia": {"type": "business_processes.update", "headers": [{"name": "X-Team", "value": "payments"}]}
        }
    })
}

fn provider(kind: &str, block: &str, settings: Value) -> Value {
    json!({
        "apiVersion": "webhook-operator.dev/v1alpha1", "kind": kind,
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {block: settings, "credentialsSecretRef": {"name": "creds"}}
    })
}

/// Sets the value at a JSON pointer, creating the last key.
fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    object
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"))
        .as_object_mut()
        .unwrap()
        .insert(key.to_string(), value);
    object
}

/// Removes the key at a JSON pointer.
fn without(mut object: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    assert!(
        object
            .pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key)
            .is_some(),
        "no {pointer}"
    );
    object
}

struct Case {
    mistake: &'static str,
    object: Value,
    field: &'static str,
    /// The OpenAPI keyword or the exact CEL rule that must reject it.
    rule: &'static str,
    /// Words of the message that tell the user what to do.
    hint: &'static str,
}

const EXACTLY_ONE_BLOCK: &str =
    "(has(self.avaya) ? 1 : 0) + (has(self.vonage) ? 1 : 0) + (has(self.authvia) ? 1 : 0) <= 1";
const ABSOLUTE_URL: &str = "isURL(self) && url(self).getScheme() != ''";
const HTTPS_SCHEME: &str = "!isURL(self) || url(self).getScheme() in ['', 'https']";
const HTTPS_URL: &str = "isURL(self) && url(self).getScheme() == 'https'";
const HTTP_URL: &str = "isURL(self) && url(self).getScheme() in ['http', 'https']";
const AUTO_DISABLE: &str = "!has(self.autoDisable) || self.autoDisable || (has(self.attempts) && self.attempts <= 3)";
const HEADER_VALUE: &str = "has(self.value) != has(self.valueFrom)";
const NAMESPACE_SELECTOR: &str = "!has(self.namespaceSelector) || !has(self.namespaceSelector.matchExpressions) || self.namespaceSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'] && ((e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0)))";

fn cases() -> Vec<Case> {
    let long = |n: usize| "a".repeat(n);
    let events_26: Vec<String> = (0..26).map(|i| format!("Agent.Event{i}")).collect();
    vec![
        Case {
            mistake: "ALL mixed with other families",
            object: with(avaya_sub(), "/spec/avaya/families", json!(["ALL", "AGENT"])),
            field: "spec.avaya.families",
            rule: "!self.exists(f, f == 'ALL') || self.size() == 1",
            hint: "remove the other families or remove ALL",
        },
        Case {
            mistake: "four families",
            object: with(
                avaya_sub(),
                "/spec/avaya/families",
                json!(["AGENT", "INTERACTION", "QUEUE", "ALL"]),
            ),
            field: "spec.avaya.families",
            rule: "maxItems",
            hint: "must have at most 3 items",
        },
        Case {
            mistake: "a family listed twice",
            object: with(avaya_sub(), "/spec/avaya/families", json!(["AGENT", "AGENT"])),
            field: "spec.avaya.families",
            rule: "self.all(f, self.exists_one(g, g == f))",
            hint: "remove the duplicate",
        },
        Case {
            mistake: "no family",
            object: with(avaya_sub(), "/spec/avaya/families", json!([])),
            field: "spec.avaya.families",
            rule: "minItems",
            hint: "should have at least 1 items",
        },
        Case {
            mistake: "lower-case family",
            object: with(avaya_sub(), "/spec/avaya/families", json!(["agent"])),
            field: "spec.avaya.families[0]",
            rule: "enum",
            hint: "supported values: \"AGENT\", \"INTERACTION\", \"QUEUE\", \"ALL\"",
        },
        Case {
            mistake: "26 events",
            object: with(avaya_sub(), "/spec/avaya/events", json!(events_26)),
            field: "spec.avaya.events",
            rule: "maxItems",
            hint: "must have at most 25 items",
        },
        Case {
            mistake: "ALL mixed with named events",
            object: with(avaya_sub(), "/spec/avaya/events", json!(["ALL", "Agent.LoggedIn"])),
            field: "spec.avaya.events",
            rule: "!self.exists(e, e == 'ALL') || self.size() == 1",
            hint: "use [ALL] for every event",
        },
        Case {
            mistake: "an event name of 257 characters",
            object: with(avaya_sub(), "/spec/avaya/events", json!([long(257)])),
            field: "spec.avaya.events[0]",
            rule: "maxLength",
            hint: "may not be more than 256",
        },
        Case {
            mistake: "an empty event name",
            object: with(avaya_sub(), "/spec/avaya/events", json!([""])),
            field: "spec.avaya.events[0]",
            rule: "minLength",
            hint: "should be at least 1 chars long",
        },
        Case {
            mistake: "http endpoint",
            object: with(avaya_sub(), "/spec/endpoint", json!("http://hooks.example.com/avaya")),
            field: "spec.endpoint",
            rule: HTTPS_SCHEME,
            hint: "must use https (https://...): the providers refuse plain http",
        },
        Case {
            mistake: "relative endpoint",
            object: with(avaya_sub(), "/spec/endpoint", json!("/hooks/avaya")),
            field: "spec.endpoint",
            rule: ABSOLUTE_URL,
            hint: "must be an absolute URL with its scheme and host",
        },
        Case {
            mistake: "endpoint without a scheme",
            object: with(avaya_sub(), "/spec/endpoint", json!("hooks.example.com/avaya")),
            field: "spec.endpoint",
            rule: ABSOLUTE_URL,
            hint: "must be an absolute URL with its scheme and host, for example https://",
        },
        Case {
            mistake: "endpoint over 2048 characters",
            object: with(
                avaya_sub(),
                "/spec/endpoint",
                json!(format!("https://h.example.com/{}", long(2040))),
            ),
            field: "spec.endpoint",
            rule: "maxLength",
            hint: "may not be more than 2048",
        },
        Case {
            mistake: "delivery method GET",
            object: with(avaya_sub(), "/spec/avaya/method", json!("GET")),
            field: "spec.avaya.method",
            rule: "enum",
            hint: "supported values: \"POST\", \"PUT\"",
        },
        Case {
            mistake: "a secretKeyRef without key",
            object: without(avaya_sub(), "/spec/avaya/authToken/secretKeyRef/key"),
            field: "spec.avaya.authToken.secretKeyRef.key",
            rule: "required",
            hint: "Required value",
        },
        Case {
            mistake: "a header name with a space",
            object: with(avaya_sub(), "/spec/avaya/authTokenHeader", json!("x token")),
            field: "spec.avaya.authTokenHeader",
            rule: "pattern",
            hint: "should match",
        },
        Case {
            mistake: "two provider blocks",
            object: with(
                avaya_sub(),
                "/spec/vonage",
                json!({"events": ["agent.presencechanged.v1"]}),
            ),
            field: "spec",
            rule: EXACTLY_ONE_BLOCK,
            hint: "remove the others",
        },
        Case {
            mistake: "no provider block",
            object: without(avaya_sub(), "/spec/avaya"),
            field: "spec",
            rule: "has(self.avaya) || has(self.vonage) || has(self.authvia)",
            hint: "set one provider block",
        },
        Case {
            mistake: "no providerRef",
            object: without(avaya_sub(), "/spec/providerRef"),
            field: "spec.providerRef",
            rule: "required",
            hint: "Required value",
        },
        Case {
            mistake: "providerRef kind misspelled",
            object: with(avaya_sub(), "/spec/providerRef/kind", json!("Provider")),
            field: "spec.providerRef.kind",
            rule: "enum",
            hint: "supported values: \"WebhookProvider\", \"ClusterWebhookProvider\"",
        },
        Case {
            mistake: "renewBefore and renewBeforePercentage together",
            object: with(
                avaya_sub(),
                "/spec/renewal",
                json!({"renewBefore": "5m", "renewBeforePercentage": 20}),
            ),
            field: "spec.renewal",
            rule: "!(has(self.renewBefore) && has(self.renewBeforePercentage))",
            hint: "set either renewBefore or renewBeforePercentage, not both",
        },
        Case {
            mistake: "renewBefore in words",
            object: with(avaya_sub(), "/spec/renewal", json!({"renewBefore": "10 minutes"})),
            field: "spec.renewal.renewBefore",
            rule: "pattern",
            hint: "should match",
        },
        Case {
            mistake: "renewBeforePercentage 100",
            object: with(avaya_sub(), "/spec/renewal", json!({"renewBeforePercentage": 100})),
            field: "spec.renewal.renewBeforePercentage",
            rule: "maximum",
            hint: "less than or equal to 99",
        },
        Case {
            mistake: "renewal on a Vonage subscription",
            object: with(vonage_sub(), "/spec/renewal", json!({"renewBefore": "5m"})),
            field: "spec",
            rule: "!has(self.renewal) || has(self.avaya)",
            hint: "remove spec.renewal",
        },
        Case {
            mistake: "deletionPolicy Retain",
            object: with(avaya_sub(), "/spec/deletionPolicy", json!("Retain")),
            field: "spec.deletionPolicy",
            rule: "enum",
            hint: "supported values: \"Delete\", \"Orphan\"",
        },
        Case {
            mistake: "adoptionPolicy Always",
            object: with(avaya_sub(), "/spec/adoptionPolicy", json!("Always")),
            field: "spec.adoptionPolicy",
            rule: "enum",
            hint: "supported values: \"None\", \"Adopt\", \"AdoptOrCreate\"",
        },
        Case {
            mistake: "Vonage name of two characters",
            object: with(vonage_sub(), "/spec/vonage/name", json!("ab")),
            field: "spec.vonage.name",
            rule: "minLength",
            hint: "should be at least 3 chars long",
        },
        Case {
            mistake: "Vonage name of 129 characters",
            object: with(vonage_sub(), "/spec/vonage/name", json!(long(129))),
            field: "spec.vonage.name",
            rule: "maxLength",
            hint: "may not be more than 128",
        },
        Case {
            mistake: "Vonage without events",
            object: with(vonage_sub(), "/spec/vonage/events", json!([])),
            field: "spec.vonage.events",
            rule: "minItems",
            hint: "should have at least 1 items",
        },
        Case {
            mistake: "Vonage event with a space",
            object: with(vonage_sub(), "/spec/vonage/events", json!(["agent presence"])),
            field: "spec.vonage.events[0]",
            rule: "pattern",
            hint: "should match",
        },
        Case {
            mistake: "generate without secretKeyRef",
            object: with(vonage_sub(), "/spec/vonage/signingSecret", json!({"generate": true})),
            field: "spec.vonage.signingSecret.secretKeyRef",
            rule: "required",
            hint: "Required value",
        },
        Case {
            mistake: "AuthVia attempts 60",
            object: with(authvia_sub(), "/spec/authvia/attempts", json!(60)),
            field: "spec.authvia.attempts",
            rule: "maximum",
            hint: "less than or equal to 50",
        },
        Case {
            mistake: "autoDisable false with attempts 10",
            object: with(
                with(authvia_sub(), "/spec/authvia/attempts", json!(10)),
                "/spec/authvia/autoDisable",
                json!(false),
            ),
            field: "spec.authvia",
            rule: AUTO_DISABLE,
            hint: "lower attempts to 0-3 or set autoDisable to true",
        },
        Case {
            mistake: "autoDisable false with the default 50 attempts",
            object: with(authvia_sub(), "/spec/authvia/autoDisable", json!(false)),
            field: "spec.authvia",
            rule: AUTO_DISABLE,
            hint: "lower attempts to 0-3 or set autoDisable to true",
        },
        Case {
            mistake: "AuthVia timeout 30 seconds",
            object: with(authvia_sub(), "/spec/authvia/timeoutSeconds", json!(30)),
            field: "spec.authvia.timeoutSeconds",
            rule: "maximum",
            hint: "less than or equal to 15",
        },
        Case {
            mistake: "AuthVia timeout 2 seconds",
            object: with(authvia_sub(), "/spec/authvia/timeoutSeconds", json!(2)),
            field: "spec.authvia.timeoutSeconds",
            rule: "minimum",
            hint: "greater than or equal to 5",
        },
        Case {
            mistake: "AuthVia description over 256 characters",
            object: with(authvia_sub(), "/spec/authvia/description", json!(long(257))),
            field: "spec.authvia.description",
            rule: "maxLength",
            hint: "may not be more than 256",
        },
        Case {
            mistake: "AuthVia type in CamelCase",
            object: with(authvia_sub(), "/spec/authvia/type", json!("BusinessProcesses")),
            field: "spec.authvia.type",
            rule: "pattern",
            hint: "should match",
        },
        Case {
            mistake: "AuthVia without type",
            object: without(authvia_sub(), "/spec/authvia/type"),
            field: "spec.authvia.type",
            rule: "required",
            hint: "Required value",
        },
        Case {
            mistake: "a header with value and valueFrom",
            object: with(
                authvia_sub(),
                "/spec/authvia/headers",
                json!([{"name": "X-Key", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
            ),
            field: "spec.authvia.headers[0]",
            rule: HEADER_VALUE,
            hint: "set exactly one of value or valueFrom.secretKeyRef",
        },
        Case {
            mistake: "a header without a value",
            object: with(authvia_sub(), "/spec/authvia/headers", json!([{"name": "X-Key"}])),
            field: "spec.authvia.headers[0]",
            rule: HEADER_VALUE,
            hint: "set exactly one of value or valueFrom.secretKeyRef",
        },
        Case {
            mistake: "the same header twice in other case",
            object: with(
                authvia_sub(),
                "/spec/authvia/headers",
                json!([{"name": "X-Team", "value": "a"}, {"name": "x-team", "value": "b"}]),
            ),
            field: "spec.authvia.headers",
            rule: "self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",
            hint: "keep one entry per name",
        },
        Case {
            mistake: "a header that forges the AuthVia signature",
            object: with(
                authvia_sub(),
                "/spec/authvia/headers",
                json!([{"name": "X-AUTHVIA-SIGNATURE", "value": "x"}]),
            ),
            field: "spec.authvia.headers",
            rule: "self.all(h, !h.name.lowerAscii().startsWith('x-authvia-'))",
            hint: "must not set X-AUTHVIA-* headers",
        },
        Case {
            mistake: "an http disable callback",
            object: with(
                authvia_sub(),
                "/spec/authvia/disableCallbackUrl",
                json!("http://hooks.example.com/disabled"),
            ),
            field: "spec.authvia.disableCallbackUrl",
            rule: HTTPS_URL,
            hint: "must be an absolute https:// URL",
        },
        Case {
            mistake: "Avaya customerId and baseUrl together",
            object: provider(
                "WebhookProvider",
                "avaya",
                json!({"customerId": "avaya1234", "baseUrl": "https://core.example.com/api/events/v1"}),
            ),
            field: "spec.avaya",
            rule: "has(self.customerId) ? !has(self.baseUrl) && !has(self.tokenUrl) : has(self.baseUrl) && has(self.tokenUrl)",
            hint: "set customerId",
        },
        Case {
            mistake: "Avaya customerId that is not a DNS label",
            object: provider("WebhookProvider", "avaya", json!({"customerId": "Avaya_1234"})),
            field: "spec.avaya.customerId",
            rule: "pattern",
            hint: "should match",
        },
        Case {
            mistake: "Avaya baseUrl with ftp",
            object: provider(
                "WebhookProvider",
                "avaya",
                json!({"baseUrl": "ftp://core.example.com/api", "tokenUrl": "https://core.example.com/token"}),
            ),
            field: "spec.avaya.baseUrl",
            rule: HTTP_URL,
            hint: "must be an absolute http(s) URL",
        },
        Case {
            mistake: "a provider with two blocks",
            object: with(
                provider("WebhookProvider", "avaya", json!({"customerId": "avaya1234"})),
                "/spec/authvia",
                json!({"accountId": "AV1"}),
            ),
            field: "spec",
            rule: EXACTLY_ONE_BLOCK,
            hint: "remove the others",
        },
        Case {
            mistake: "Vonage region us",
            object: provider("ClusterWebhookProvider", "vonage", json!({"region": "us"})),
            field: "spec.vonage.region",
            rule: "enum",
            hint: "supported values: \"emea\", \"nam\", \"apac\"",
        },
        Case {
            mistake: "a namespace selector with an unknown operator",
            object: with(
                provider("ClusterWebhookProvider", "vonage", json!({"region": "emea"})),
                "/spec/namespaceSelector",
                json!({"matchExpressions": [{"key": "team", "operator": "Maybe", "values": ["a"]}]}),
            ),
            field: "spec",
            rule: NAMESPACE_SELECTOR,
            hint: "operator must be In, NotIn, Exists or DoesNotExist",
        },
        Case {
            mistake: "a namespace selector In without values",
            object: with(
                provider("ClusterWebhookProvider", "vonage", json!({"region": "emea"})),
                "/spec/namespaceSelector",
                json!({"matchExpressions": [{"key": "team", "operator": "In"}]}),
            ),
            field: "spec",
            rule: NAMESPACE_SELECTOR,
            hint: "In and NotIn need values",
        },
        Case {
            mistake: "Vonage baseUrl without tokenUrl",
            object: provider(
                "ClusterWebhookProvider",
                "vonage",
                json!({"baseUrl": "https://emea.api.example.com/webhooks"}),
            ),
            field: "spec.vonage",
            rule: "has(self.region) ? !has(self.baseUrl) && !has(self.tokenUrl) : has(self.baseUrl) && has(self.tokenUrl)",
            hint: "or both baseUrl and tokenUrl",
        },
        Case {
            mistake: "AuthVia without accountId",
            object: provider("WebhookProvider", "authvia", json!({})),
            field: "spec.authvia.accountId",
            rule: "required",
            hint: "Required value",
        },
        Case {
            mistake: "a provider without credentials",
            object: without(
                provider("WebhookProvider", "authvia", json!({"accountId": "AV1"})),
                "/spec/credentialsSecretRef",
            ),
            field: "spec.credentialsSecretRef",
            rule: "required",
            hint: "Required value",
        },
        Case {
            mistake: "a rate limit of zero",
            object: with(
                provider("WebhookProvider", "authvia", json!({"accountId": "AV1"})),
                "/spec/rateLimit",
                json!({"requestsPerSecond": 0}),
            ),
            field: "spec.rateLimit.requestsPerSecond",
            rule: "minimum",
            hint: "greater than or equal to 1",
        },
    ]
}

#[test]
fn the_valid_bases_are_admitted() {
    for object in [avaya_sub(), vonage_sub(), authvia_sub()] {
        let admitted = admit(object).expect("base object is valid");
        assert!(admitted.pruned.is_empty());
    }
    let defaulted = admit(authvia_sub()).unwrap().object;
    assert_eq!(defaulted["spec"]["authvia"]["attempts"], 50);
    assert_eq!(defaulted["spec"]["authvia"]["autoDisable"], true);
    assert_eq!(defaulted["spec"]["deletionPolicy"], "Delete");
    assert_eq!(defaulted["spec"]["adoptionPolicy"], "None");
    let avaya = admit(avaya_sub()).unwrap().object;
    assert_eq!(avaya["spec"]["avaya"]["method"], "POST");
    assert_eq!(avaya["spec"]["avaya"]["authTokenHeader"], "auth-token");
    assert_eq!(avaya["spec"]["providerRef"]["kind"], "WebhookProvider");
}

#[test]
fn each_mistake_is_rejected_by_its_rule_with_a_fix() {
    let cases = cases();
    assert!(cases.len() >= 30, "the table covers at least 30 mistakes");
    let mut failures = Vec::new();
    for case in cases {
        match admit(case.object) {
            Ok(_) => failures.push(format!("{}: accepted", case.mistake)),
            Err(errors) => {
                let summary: Vec<String> = errors
                    .iter()
                    .map(|e| format!("[{} | {}] {}", e.field, e.rule, e.message))
                    .collect();
                if errors.len() != 1 {
                    failures.push(format!("{}: expected one error, got {summary:?}", case.mistake));
                    continue;
                }
                let e = &errors[0];
                if e.field != case.field || e.rule != case.rule || !e.message.contains(case.hint) {
                    failures.push(format!(
                        "{}: expected [{} | {}] containing {:?}, got {summary:?}",
                        case.mistake, case.field, case.rule, case.hint
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Admits `new` as an update of `old` (transition rules see `oldSelf`).
fn admit_update(old: Value, new: Value) -> Result<Value, Vec<webhook_operator::sandbox::kube::schema::FieldError>> {
    use webhook_operator::sandbox::kube::schema::{self, Schema};
    let schema = Schema::new(crate::support::tools::schema_for_kind("WebhookSubscription"));
    let old = schema::admit(&schema, old, None).expect("old object is valid").object;
    schema::admit(&schema, new, Some(&old)).map(|a| a.object)
}

#[test]
fn changes_that_would_leak_the_remote_subscription_are_refused() {
    // Another provider object: the remote subscription lives in the old one's account.
    let moved = with(avaya_sub(), "/spec/providerRef/name", json!("avaya-eu"));
    let errors = admit_update(avaya_sub(), moved).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "spec.providerRef");
    assert!(
        errors[0].message.contains("spec.providerRef cannot change"),
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("deletionPolicy: Orphan"),
        "says how to move it: {errors:?}"
    );
    // Another provider type.
    let mut retyped = without(avaya_sub(), "/spec/avaya");
    retyped["spec"]["vonage"] = json!({"events": ["agent.presencechanged.v1"]});
    let errors = admit_update(avaya_sub(), retyped).unwrap_err();
    assert!(
        errors.iter().any(|e| e
            .message
            .contains("the provider block (avaya, vonage or authvia) cannot change")),
        "{errors:?}"
    );
    // Everything else may change.
    let retuned = with(
        avaya_sub(),
        "/spec/endpoint",
        json!("https://hooks.example.com/elsewhere"),
    );
    assert!(admit_update(avaya_sub(), retuned).is_ok());
    let same = avaya_sub();
    assert!(admit_update(avaya_sub(), same).is_ok());
}
