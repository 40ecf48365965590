//! The scale benchmark: the real controller (`webhook-operator run`, its own process) against the sandbox's
//! emulated Kubernetes API and provider simulators (in this process), with N subscriptions split evenly over
//! Avaya, Vonage and AuthVia. Prints one JSON object per scenario; BENCHMARKS.md says what each figure
//! means and what bounds it.
//!
//! ```text
//! cargo bench --bench scale -- --subscriptions 1000 [--rate-limit 50] [--lifetime-seconds 30]
//! ```
//!
//! Counting: provider calls from the simulators' request logs (token requests apart), Kubernetes reads
//! and writes from the emulator's (watches apart); the benchmark's own objects are written straight into
//! the emulator's store, so every request counted is the controller's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use webhook_operator::sandbox::system::{Sandbox, SandboxOptions};

const GROUP: &str = "webhook-operator.dev";
/// How many subscriptions share the rotated Secret.
const SHARED_SECRET_USERS: usize = 1_000;
/// A quiet window after convergence: nothing may be read, written or called in it.
const IDLE: Duration = Duration::from_secs(15);

struct Args {
    subscriptions: usize,
    /// Which scenario groups to run: create (with idle, restart, rotation), steady, rate.
    only: Option<Vec<String>>,
    rate_limit: Option<u32>,
    lifetime: Option<Duration>,
}

fn args() -> Args {
    let mut parsed = Args {
        subscriptions: 1_000,
        only: None,
        rate_limit: None,
        lifetime: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a whole number"))
        };
        match arg.as_str() {
            "--subscriptions" => parsed.subscriptions = value("--subscriptions") as usize,
            "--rate-limit" => parsed.rate_limit = Some(value("--rate-limit") as u32),
            "--only" => parsed.only = it.next().map(|v| v.split(',').map(str::to_string).collect()),
            "--lifetime-seconds" => parsed.lifetime = Some(Duration::from_secs(value("--lifetime-seconds"))),
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => panic!(
                "unknown argument {other}: use --subscriptions N [--rate-limit R] [--lifetime-seconds S] [--only create,steady,rate]"
            ),
        }
    }
    assert!(parsed.subscriptions >= 3, "--subscriptions must be at least 3");
    parsed
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU time (user + system) a process has used so far, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name; the kernel counts
    // them in USER_HZ, which is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The sandbox, the controller process, and what was counted.
struct Bench {
    sandbox: Sandbox,
    dir: PathBuf,
    controller: Option<Child>,
    metrics_port: u16,
    n: usize,
    names: Vec<(String, &'static str)>,
    shared_token_users: usize,
    /// CPU seconds the controller and the sandbox spent during the last creation.
    create_cpu: (f64, f64),
}

/// Provider calls (token requests apart), per simulator.
#[derive(Debug, Default, Clone)]
struct Calls {
    /// By provider, method and path shape (ids as `{id}`).
    by_kind: BTreeMap<String, usize>,
    avaya: usize,
    vonage: usize,
    authvia: usize,
    tokens: usize,
    avaya_lists: usize,
}

impl Calls {
    fn total(&self) -> usize {
        self.avaya + self.vonage + self.authvia
    }
}

/// Kubernetes requests (watches apart).
#[derive(Debug, Default, Clone, Copy)]
struct KubeRequests {
    reads: usize,
    writes: usize,
    events: usize,
}

impl Bench {
    async fn start(n: usize, lifetime: Duration, rate: Option<u32>) -> Bench {
        let dir = std::env::temp_dir().join(format!("whop-bench-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let sandbox = Sandbox::start(SandboxOptions {
            port: 0,
            kubeconfig: dir.join("kubeconfig"),
            lifetime,
            delivery_interval: Duration::from_secs(3600),
            exit_after: None,
            controller: false,
        })
        .await
        .expect("sandbox starts");
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bench = Bench {
            sandbox,
            dir,
            controller: None,
            metrics_port,
            n,
            names: Vec::new(),
            shared_token_users: 0,
            create_cpu: (0.0, 0.0),
        };
        // Without a limit (the highest the schema allows) the providers' own speed is measured; with one,
        // the limit, with a burst of 1 so that the ideal is N × calls / R.
        let (rps, burst) = rate.map_or((1_000, 1_000), |r| (r, 1));
        bench.limit_providers(rps, burst);
        bench
    }

    fn put(&self, group: &str, plural: &str, ns: &str, object: Value) {
        let version = if group.is_empty() { "v1" } else { "v1alpha1" };
        self.sandbox.emulator.with_state(|s| {
            let rt = s.resource(group, version, plural).expect("resource");
            s.put(&rt, ns, object).expect("stored");
        });
    }

    fn objects(&self, group: &str, version: &str, plural: &str) -> Vec<Value> {
        self.sandbox.emulator.with_state(|s| {
            let rt = s.resource(group, version, plural).expect("resource");
            s.objects_of(&rt)
        })
    }

    fn limit_providers(&self, rps: u32, burst: u32) {
        for (plural, kind) in [
            ("webhookproviders", "WebhookProvider"),
            ("clusterwebhookproviders", "ClusterWebhookProvider"),
        ] {
            for mut provider in self.objects(GROUP, "v1alpha1", plural) {
                assert_eq!(provider["kind"], kind);
                provider["spec"]["rateLimit"] = json!({"requestsPerSecond": rps, "burst": burst});
                let ns = provider["metadata"]["namespace"].as_str().unwrap_or("").to_string();
                self.put(GROUP, plural, &ns, provider);
            }
        }
    }

    /// N subscriptions modelled on the examples, a third per provider. The first Avaya ones (up to
    /// 1,000) share the token Secret that the rotation scenario changes.
    fn create_subscriptions(&mut self) {
        let examples: Vec<Value> = self.objects(GROUP, "v1alpha1", "webhooksubscriptions");
        let template = |block: &str| {
            examples
                .iter()
                .find(|e| e["spec"].get(block).is_some())
                .cloned()
                .unwrap_or_else(|| panic!("an example {block} subscription"))
        };
        let templates = [
            ("avaya", template("avaya")),
            ("vonage", template("vonage")),
            ("authvia", template("authvia")),
        ];
        for token in ["bench-shared-token", "bench-own-token"] {
            self.put(
                "",
                "secrets",
                "default",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": token, "namespace": "default"},
                       "stringData": {"token": format!("{token}-value-1")}}),
            );
        }
        let mut avaya_count = 0;
        for i in 0..self.n {
            let (provider, template) = &templates[i % 3];
            let mut sub = template.clone();
            let name = format!("bench-{provider}-{i:05}");
            let endpoint = sub["spec"]["endpoint"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
            sub["spec"]["endpoint"] = json!(format!("{endpoint}/bench/{i}"));
            sub["metadata"] = json!({"name": name, "namespace": template["metadata"]["namespace"]});
            sub.as_object_mut().unwrap().remove("status");
            if *provider == "avaya" {
                let shared = avaya_count < SHARED_SECRET_USERS;
                avaya_count += 1;
                let secret = if shared {
                    "bench-shared-token"
                } else {
                    "bench-own-token"
                };
                sub["spec"]["avaya"]["authToken"] = json!({"secretKeyRef": {"name": secret, "key": "token"}});
            }
            let ns = sub["metadata"]["namespace"].as_str().unwrap().to_string();
            self.put(GROUP, "webhooksubscriptions", &ns, sub);
            self.names.push((name, provider));
        }
        self.shared_token_users = avaya_count.min(SHARED_SECRET_USERS);
    }

    fn start_controller(&mut self) {
        let mut args = self.sandbox.operator_args();
        let at = args.iter().position(|a| a == "--metrics-addr").unwrap();
        args[at + 1] = format!("127.0.0.1:{}", self.metrics_port);
        let log = std::fs::File::create(self.dir.join(format!("operator-{}.log", fastrand::u32(..)))).unwrap();
        // A profiler can wrap the controller, e.g. WEBHOOK_OPERATOR_BENCH_WRAP="heaptrack -o /tmp/ctl".
        let wrapper: Vec<String> = std::env::var("WEBHOOK_OPERATOR_BENCH_WRAP")
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let program = env!("CARGO_BIN_EXE_webhook-operator").to_string();
        let (program, args) = match wrapper.split_first() {
            Some((first, rest)) => (
                first.clone(),
                rest.iter().cloned().chain([program]).chain(args).collect(),
            ),
            None => (program, args),
        };
        let child = Command::new(program)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the controller starts");
        self.controller = Some(child);
    }

    /// SIGTERM, and wait for the exit.
    fn stop_controller(&mut self) -> f64 {
        let Some(mut child) = self.controller.take() else {
            return 0.0;
        };
        let peak = peak_rss_mib(child.id());
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
        peak
    }

    fn controller_cpu(&self) -> f64 {
        self.controller.as_ref().map_or(0.0, |c| cpu_seconds(c.id()))
    }

    fn controller_rss(&self) -> f64 {
        self.controller.as_ref().map_or(0.0, |c| peak_rss_mib(c.id()))
    }

    async fn reconciles(&self) -> Option<u64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("webhook_operator_reconcile_duration_seconds_count "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// How many of ours are Ready (counted in the store, without copying 10,000 objects each time).
    fn ready(&self) -> usize {
        self.sandbox.emulator.with_state(|s| {
            let rt = s.resource(GROUP, "v1alpha1", "webhooksubscriptions").expect("resource");
            s.stored_of(&rt)
                .filter(|s| s["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("bench-")))
                .filter(|s| {
                    s["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                })
                .count()
        })
    }

    /// Waits until all are Ready; the seconds it took from `since`.
    async fn wait_ready(&self, since: Instant, within: Duration) -> f64 {
        loop {
            if self.ready() == self.n {
                return since.elapsed().as_secs_f64();
            }
            assert!(
                since.elapsed() < within,
                "{} of {} Ready after {within:?}",
                self.ready(),
                self.n
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts the controller, lets it settle the examples' own subscriptions (so that what is counted is
    /// ours alone), clears the counts, creates the N and waits until they are Ready; the seconds that took.
    async fn settle_then_create(&mut self, within: Duration) -> f64 {
        self.start_controller();
        while self.reconciles().await.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_quiet(Duration::from_secs(2)).await;
        self.clear_counts();
        let started = Instant::now();
        let cpu_before = (self.controller_cpu(), cpu_seconds(std::process::id()));
        self.create_subscriptions();
        let seconds = self.wait_ready(started, within).await;
        self.create_cpu = (
            self.controller_cpu() - cpu_before.0,
            cpu_seconds(std::process::id()) - cpu_before.1,
        );
        seconds
    }

    /// Waits until the controller has completed no reconcile for `quiet`.
    async fn wait_quiet(&self, quiet: Duration) {
        let mut last = self.reconciles().await;
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.reconciles().await;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    fn clear_counts(&self) {
        self.sandbox.emulator.clear_requests();
        for core in [
            &self.sandbox.avaya.core,
            &self.sandbox.vonage.core,
            &self.sandbox.authvia.core,
        ] {
            core.clear_requests();
        }
    }

    fn calls(&self) -> Calls {
        let token = |path: &str| path.contains("/token") || path.ends_with("/tokens");
        let count = |requests: Vec<webhook_operator::sandbox::providers::SimRequest>| {
            let tokens = requests.iter().filter(|r| token(&r.path)).count();
            (requests.len() - tokens, tokens, requests)
        };
        let (avaya, t1, avaya_requests) = count(self.sandbox.avaya.core.requests());
        let (vonage, t2, vonage_requests) = count(self.sandbox.vonage.core.requests());
        let (authvia, t3, authvia_requests) = count(self.sandbox.authvia.core.requests());
        let mut by_kind = BTreeMap::new();
        for (provider, requests) in [
            ("avaya", &avaya_requests),
            ("vonage", &vonage_requests),
            ("authvia", &authvia_requests),
        ] {
            for r in requests.iter() {
                let shape: Vec<&str> = r
                    .path
                    .split('/')
                    .map(|seg| {
                        if seg.chars().any(|c| c.is_ascii_digit()) {
                            "{id}"
                        } else {
                            seg
                        }
                    })
                    .collect();
                *by_kind
                    .entry(format!("{provider} {} {}", r.method, shape.join("/")))
                    .or_default() += 1;
            }
        }
        Calls {
            by_kind,
            avaya,
            vonage,
            authvia,
            tokens: t1 + t2 + t3,
            avaya_lists: avaya_requests
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with("/subscriptions"))
                .count(),
        }
    }

    fn kube(&self) -> KubeRequests {
        let mut counted = KubeRequests::default();
        for r in self.sandbox.emulator.requests() {
            if r.query.contains("watch=true") || r.query.contains("watch=1") {
                continue;
            }
            match r.method.as_str() {
                "GET" => counted.reads += 1,
                _ if r.path.contains("/events") => {
                    counted.writes += 1;
                    counted.events += 1;
                }
                _ => counted.writes += 1,
            }
        }
        counted
    }

    fn avaya_ids_sharing_the_token(&self) -> Vec<String> {
        self.objects(GROUP, "v1alpha1", "webhooksubscriptions")
            .iter()
            .filter(|s| s["spec"]["avaya"]["authToken"]["secretKeyRef"]["name"] == "bench-shared-token")
            .filter_map(|s| s["status"]["subscriptionId"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop_controller();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scenario's figures: every field is present, null where it does not apply.
fn report(scenario: &str, n: usize, figures: &[(&str, Value)]) {
    let mut object: BTreeMap<&str, Value> = [
        "ready_seconds",
        "ideal_seconds",
        "ratio_to_ideal",
        "peak_rss_mib_controller",
        "peak_rss_mib_sandbox",
        "remote_calls_per_subscription",
        "kube_writes_per_subscription",
        "kube_reads_per_subscription",
        "remote_calls_per_renewal",
        "reconciles_per_renewal",
        "idle_remote_calls",
        "idle_kube_reads",
        "idle_kube_writes",
        "expirations",
        "renewal_lateness_p99_ms",
        "max_renewals_in_one_second",
        "rotation_p99_ms",
        "restart_remote_calls",
    ]
    .into_iter()
    .map(|k| (k, Value::Null))
    .collect();
    object.insert("scenario", json!(scenario));
    object.insert("n", json!(n));
    for (k, v) in figures {
        object.insert(k, v.clone());
    }
    println!("{}", serde_json::to_string(&object).unwrap());
}

/// Create N, the quiet window after, a restart, and the rotation of one shared Secret.
async fn create_idle_restart_rotate(n: usize) {
    let mut bench = Bench::start(n, Duration::from_secs(900), None).await;
    let ready_seconds = bench.settle_then_create(Duration::from_secs(1800)).await;
    bench.wait_quiet(Duration::from_secs(2)).await;
    let (calls, kube) = (bench.calls(), bench.kube());
    let per = |x: usize| json!(round(x as f64 / n as f64));
    report(
        "create",
        n,
        &[
            ("ready_seconds", json!(round(ready_seconds))),
            ("peak_rss_mib_controller", json!(round(bench.controller_rss()))),
            ("peak_rss_mib_sandbox", json!(round(peak_rss_mib(std::process::id())))),
            ("cpu_seconds_controller", json!(round(bench.create_cpu.0))),
            ("cpu_seconds_sandbox", json!(round(bench.create_cpu.1))),
            ("remote_calls_per_subscription", per(calls.total())),
            ("kube_writes_per_subscription", per(kube.writes)),
            ("kube_reads_per_subscription", per(kube.reads)),
            ("events_per_subscription", per(kube.events)),
            ("avaya_list_calls", json!(calls.avaya_lists)),
            ("token_calls", json!(calls.tokens)),
            ("calls_by_kind", json!(calls.by_kind)),
        ],
    );

    bench.clear_counts();
    tokio::time::sleep(IDLE).await;
    let (calls, kube) = (bench.calls(), bench.kube());
    report(
        "idle",
        n,
        &[
            ("idle_seconds", json!(IDLE.as_secs())),
            ("idle_remote_calls", json!(calls.total())),
            ("idle_kube_reads", json!(kube.reads)),
            ("idle_kube_writes", json!(kube.writes)),
        ],
    );

    let peak_before_restart = bench.stop_controller();
    bench.clear_counts();
    let restarted = Instant::now();
    bench.start_controller();
    // Every subscription passes once (a drift check: this process has never looked at them), then
    // nothing more happens.
    while bench.reconciles().await.is_none_or(|done| done < n as u64) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = restarted.elapsed().as_secs_f64();
    bench.wait_quiet(Duration::from_secs(3)).await;
    let (calls, kube) = (bench.calls(), bench.kube());
    let restart_kinds = calls.by_kind.clone();
    report(
        "restart",
        n,
        &[
            ("settled_seconds", json!(round(settled))),
            ("restart_remote_calls", json!(calls.total())),
            ("avaya_list_calls", json!(calls.avaya_lists)),
            ("kube_reads_per_subscription", per(kube.reads)),
            ("kube_writes_per_subscription", per(kube.writes)),
            ("peak_rss_mib_controller", json!(round(peak_before_restart))),
            ("calls_by_kind", json!(restart_kinds)),
        ],
    );

    // One Secret shared by up to 1,000 Avaya subscriptions changes: each renews with the new token.
    let ids = bench.avaya_ids_sharing_the_token();
    bench.clear_counts();
    let reconciles_before = bench.reconciles().await.unwrap_or(0);
    let rotated = Instant::now();
    bench.put(
        "",
        "secrets",
        "default",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-shared-token", "namespace": "default"},
               "stringData": {"token": "bench-shared-token-value-2"}}),
    );
    let mut latency: BTreeMap<String, f64> = BTreeMap::new();
    while latency.len() < ids.len() && rotated.elapsed() < Duration::from_secs(600) {
        for id in &ids {
            if latency.contains_key(id) {
                continue;
            }
            let current = bench.sandbox.avaya.subscription(id).and_then(|s| s.auth_token);
            if current.as_deref() == Some("bench-shared-token-value-2") {
                latency.insert(id.clone(), rotated.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bench.wait_quiet(Duration::from_secs(2)).await;
    let calls = bench.calls();
    let reconciles = bench.reconciles().await.unwrap_or(0) - reconciles_before;
    let mut values: Vec<f64> = latency.values().copied().collect();
    report(
        "rotation",
        ids.len(),
        &[
            ("rotated", json!(latency.len())),
            ("rotation_p99_ms", json!(percentile(&mut values, 99.0).map(round))),
            (
                "remote_calls_per_rotation",
                json!(round(calls.total() as f64 / ids.len().max(1) as f64)),
            ),
            (
                "reconciles_per_rotation",
                json!(round(reconciles as f64 / ids.len().max(1) as f64)),
            ),
        ],
    );
}

/// A simulated hour: four Avaya lifetimes (of 900 s, compressed to `lifetime`) once all are Ready.
async fn steady(n: usize, lifetime: Duration) {
    let mut bench = Bench::start(n, lifetime, None).await;
    bench.start_controller();
    bench.create_subscriptions();
    bench.wait_ready(Instant::now(), Duration::from_secs(1800)).await;
    let _ = bench.sandbox.avaya.take_renewal_margins();
    bench.clear_counts();
    let reconciles_before = bench.reconciles().await.unwrap_or(0);
    let lapses_before: u32 = bench.sandbox.avaya.subscriptions().iter().map(|s| s.lapses).sum();
    let window = lifetime * 4;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let renewals = bench.sandbox.avaya.take_renewal_margins();
    let calls = bench.calls();
    let reconciles = bench.reconciles().await.unwrap_or(0) - reconciles_before;
    let lapses: u32 = bench
        .sandbox
        .avaya
        .subscriptions()
        .iter()
        .map(|s| s.lapses)
        .sum::<u32>()
        - lapses_before;
    let inactive = bench
        .sandbox
        .avaya
        .subscriptions()
        .iter()
        .filter(|s| bench.sandbox.avaya.status_of(&s.id) == Some("INACTIVE"))
        .count();
    // Renewal is promised a third of the lifetime before expiry at the latest (the jitter only moves it
    // earlier): a renewal with less left is late by the difference.
    let promised = lifetime.as_secs_f64() / 3.0;
    let mut lateness: Vec<f64> = renewals
        .iter()
        .map(|(_, margin)| ((promised - margin.as_secs_f64()) * 1000.0).max(0.0))
        .collect();
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for (at, _) in &renewals {
        *per_second
            .entry(at.saturating_duration_since(started).as_secs())
            .or_default() += 1;
    }
    let count = renewals.len().max(1) as f64;
    report(
        "steady",
        n,
        &[
            ("simulated_seconds", json!(3600)),
            ("real_seconds", json!(window.as_secs())),
            ("avaya_lifetime_seconds", json!(lifetime.as_secs())),
            ("renewals", json!(renewals.len())),
            ("remote_calls_per_renewal", json!(round(calls.total() as f64 / count))),
            ("reconciles_per_renewal", json!(round(reconciles as f64 / count))),
            ("expirations", json!(u64::from(lapses) + inactive as u64)),
            (
                "renewal_lateness_p99_ms",
                json!(percentile(&mut lateness, 99.0).map(round)),
            ),
            (
                "max_renewals_in_one_second",
                json!(per_second.values().copied().max().unwrap_or(0)),
            ),
            ("peak_rss_mib_controller", json!(round(bench.controller_rss()))),
            ("peak_rss_mib_sandbox", json!(round(peak_rss_mib(std::process::id())))),
        ],
    );
}

/// Create N with every provider account limited to `rate` requests per second.
async fn rate_limited(n: usize, rate: u32) {
    let mut bench = Bench::start(n, Duration::from_secs(900), Some(rate)).await;
    let ready_seconds = bench.settle_then_create(Duration::from_secs(24 * 3600)).await;
    let calls = bench.calls();
    // Each account needs one create per subscription plus its listing pages, at `rate` per second;
    // the accounts work side by side, so the busiest one sets the ideal.
    let per_account = n.div_ceil(3);
    let busiest = (per_account + calls.avaya_lists).max(calls.vonage).max(calls.authvia);
    let ideal = busiest as f64 / f64::from(rate);
    report(
        "create_rate_limited",
        n,
        &[
            ("rate_limit", json!(rate)),
            ("ready_seconds", json!(round(ready_seconds))),
            ("ideal_seconds", json!(round(ideal))),
            ("ratio_to_ideal", json!(round(ready_seconds / ideal))),
            (
                "remote_calls_per_subscription",
                json!(round(calls.total() as f64 / n as f64)),
            ),
            ("peak_rss_mib_controller", json!(round(bench.controller_rss()))),
        ],
    );
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |group: &str| args.only.as_ref().is_none_or(|only| only.iter().any(|o| o == group));
    runtime.block_on(async {
        if run("create") {
            create_idle_restart_rotate(args.subscriptions).await;
        }
        // A third of N renews, each once per two thirds of a lifetime: the compressed lifetime keeps that
        // at 100 renewals a second at most (at least 30 s).
        let avaya = args.subscriptions.div_ceil(3) as f64;
        let lifetime = args
            .lifetime
            .unwrap_or_else(|| Duration::from_secs_f64((avaya * 1.5 / 100.0).max(30.0).ceil()));
        if run("steady") {
            steady(args.subscriptions, lifetime).await;
        }
        if let Some(rate) = args.rate_limit.filter(|_| run("rate")) {
            rate_limited(args.subscriptions, rate).await;
        }
    });
}
