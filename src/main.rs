//! The `webhook-operator` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "webhook-operator",
    version,
    about = "Keeps webhook subscriptions on Avaya Infinity, Vonage Contact Center and AuthVia alive"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the controller against a cluster (in-cluster configuration, $KUBECONFIG or --kubeconfig).
    Run {
        /// Kubeconfig to use instead of the in-cluster configuration.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
        /// Namespace that holds ClusterWebhookProviders' credentials Secrets (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "webhook-operator")]
        cluster_resource_namespace: String,
        /// How often an up-to-date subscription is compared with the provider (a Go duration);
        /// the webhook-operator.dev/drift-check-interval annotation overrides it per object.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        drift_check_interval: Duration,
        /// How often providers' credentials are checked for their Ready condition.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        provider_check_interval: Duration,
        /// How many subscriptions are reconciled at once (1 to 1000). Each provider account's rate limit
        /// still applies; more concurrency only helps across accounts.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1000))]
        reconcile_concurrency: u16,
        /// Where `/metrics`, `/healthz` and `/readyz` are served.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: std::net::SocketAddr,
        /// Log format: text or json.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
        /// Act only while holding the Lease `webhook-operator` in the operator's namespace (for several
        /// replicas).
        #[arg(long)]
        leader_election: bool,
        /// This replica's identity in the Lease.
        #[arg(long, env = "POD_NAME", default_value = "webhook-operator")]
        leader_election_id: String,
        /// The Lease's namespace (default: --cluster-resource-namespace).
        #[arg(long, value_name = "NS")]
        leader_election_namespace: Option<String>,
        /// The Lease's name (a shard's is this name followed by `-shard-` and the shard's names).
        #[arg(long, default_value = "webhook-operator")]
        leader_election_name: String,
        /// Reconcile only the subscriptions of a shard: `webhook-operator.dev/shard=NAME` or
        /// `webhook-operator.dev/shard in (A,B)`. Without it, a replica reconciles the subscriptions that
        /// have no shard label. Providers and Secrets are shared; each shard has its own Lease.
        #[arg(long, value_name = "SELECTOR")]
        shard_selector: Option<String>,
        /// Watch only this namespace (repeatable): for an install whose service account holds Roles in
        /// these namespaces only. Subscriptions elsewhere are left alone, and ClusterWebhookProviders are
        /// not read. Without it, every namespace.
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
        /// How long the Lease is valid without renewal.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        leader_election_lease_duration: Duration,
        /// How long a leader goes on acting without a renewal (shorter than the lease duration).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        leader_election_renew_deadline: Duration,
        /// How often the leader renews and followers try.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        leader_election_retry_period: Duration,
        /// An origin (scheme://host[:port], plain http included) that a provider's baseUrl/tokenUrl
        /// override may name besides the provider's own https hosts (repeatable). Credentials are sent
        /// there: allow only endpoints you trust, such as a test double or an egress proxy.
        #[arg(long = "allow-override-origin", value_name = "ORIGIN", value_parser = parse_origin)]
        allow_override_origins: Vec<webhook_operator::controller::endpoints::Origin>,
        /// Sandbox builds only: send calls for a provider's own hosts to a simulator instead
        /// (`https://*.avayacloud.com=http://127.0.0.1:PORT`, repeatable); what `sandbox --no-controller`
        /// prints.
        #[cfg(feature = "sandbox")]
        #[arg(long = "redirect-provider-host", value_name = "FROM=TO", value_parser = parse_redirect)]
        redirect_provider_hosts: Vec<(
            webhook_operator::controller::endpoints::Origin,
            webhook_operator::controller::endpoints::Origin,
        )>,
    },
    /// Show subscriptions: conditions with reasons, remote id and state, expiry and next renewal, recent
    /// Events, and what to do about a failing reason.
    Status(webhook_operator::cli::StatusArgs),
    /// Ask the operator to renew now (Avaya; a check for providers whose subscriptions do not expire) and
    /// wait for its answer.
    Renew(webhook_operator::cli::RequestArgs),
    /// Ask the operator to compare with the provider now, and wait for its answer.
    Reconcile(webhook_operator::cli::RequestArgs),
    /// Stop remote writes to subscriptions (the paused annotation), and wait until they are paused.
    Pause(webhook_operator::cli::RequestArgs),
    /// Remove the paused annotation, and wait until the operator acts again.
    Resume(webhook_operator::cli::RequestArgs),
    /// Check WebhookSubscriptions in files offline against the CRD schema and CEL rules, and print the
    /// create request each would cause (Secret values never read). Builds with the sandbox feature.
    #[cfg(feature = "sandbox")]
    Plan(webhook_operator::cli::PlanArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the CustomResourceDefinitions as YAML (one document per CRD), or write one file each.
    Crds {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    #[cfg(feature = "sandbox")]
    /// Run the whole system on this machine: an emulated Kubernetes API, simulators of the three providers,
    /// a verifying webhook receiver and the controller, with the examples applied.
    Sandbox {
        /// Start only the emulated Kubernetes API (for pointing kubectl at it).
        #[arg(long)]
        api_only: bool,
        /// Where to write the kubeconfig that points at the emulated API.
        #[arg(long, value_name = "PATH", default_value = "webhook-operator-sandbox.kubeconfig")]
        kubeconfig: PathBuf,
        /// Port of the emulated API (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Lifetime of Avaya subscriptions in the simulator; short, so renewals show within a minute.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        lifetime: Duration,
        /// How often each simulator delivers a test event to each subscription.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        delivery_interval: Duration,
        /// Do not run the controller: print how to run `webhook-operator run` against the sandbox from
        /// outside (to kill and restart it), and serve the fault-injection control surface only.
        #[arg(long)]
        no_controller: bool,
        /// Stop after this long (for scripts), printing a summary line per subscription.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        exit_after: Option<Duration>,
    },
}

/// The file name this binary was run as (argv[0] without its directory).
fn program_name() -> String {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    std::path::Path::new(&argv0)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether kubectl runs this binary as `kubectl_complete-whsub`, for the completion of `kubectl whsub`.
fn completes_for_kubectl() -> bool {
    program_name().starts_with("kubectl_complete-whsub")
}

/// The name the binary answers to: `kubectl whsub` when installed as the kubectl plugin `kubectl-whsub`.
fn invoked_as() -> &'static str {
    if program_name().starts_with("kubectl-whsub") {
        "kubectl whsub"
    } else {
        "webhook-operator"
    }
}

fn main() -> std::process::ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    if completes_for_kubectl() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        webhook_operator::cli::complete::run_kubectl_complete(&Cli::command(), &words);
        return std::process::ExitCode::SUCCESS;
    }
    let name = invoked_as();
    let matches = Cli::command().name(name).bin_name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined, no backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            kubeconfig,
            cluster_resource_namespace,
            drift_check_interval,
            provider_check_interval,
            reconcile_concurrency,
            metrics_addr,
            log_format,
            leader_election,
            leader_election_id,
            leader_election_namespace,
            leader_election_name,
            shard_selector,
            namespaces,
            leader_election_lease_duration,
            leader_election_renew_deadline,
            leader_election_retry_period,
            allow_override_origins,
            #[cfg(feature = "sandbox")]
            redirect_provider_hosts,
        } => {
            webhook_operator::telemetry::init_logging("info,kube_runtime=warn", log_format == "json");
            let mut config = webhook_operator::controller::Config::new(
                &cluster_resource_namespace,
                Arc::new(webhook_operator::clock::SystemClock),
            );
            config.drift_interval = drift_check_interval;
            config.provider_check_interval = provider_check_interval;
            config.reconcile_concurrency = reconcile_concurrency;
            config.instance = leader_election_id.clone();
            config.endpoints.allowed_origins = allow_override_origins;
            if let Some(selector) = &shard_selector {
                config.shard =
                    webhook_operator::controller::shard::Shard::parse(selector).map_err(anyhow::Error::msg)?;
            }
            config.scope =
                webhook_operator::controller::scope::Scope::parse(&namespaces).map_err(anyhow::Error::msg)?;
            #[cfg(feature = "sandbox")]
            {
                config.endpoints.redirects = redirect_provider_hosts;
            }
            let election = if leader_election {
                let mut election = webhook_operator::controller::leader::Election::new(
                    leader_election_namespace
                        .as_deref()
                        .unwrap_or(&cluster_resource_namespace),
                    &config.shard.lease_name(&leader_election_name),
                    &leader_election_id,
                );
                election.lease_duration = leader_election_lease_duration;
                election.renew_deadline = leader_election_renew_deadline;
                election.retry_period = leader_election_retry_period;
                election.validate().map_err(anyhow::Error::msg)?;
                Some(election)
            } else {
                None
            };
            run_controller(kubeconfig, config, metrics_addr, election)
        }
        Command::Crds { output_dir } => print_crds(output_dir),
        Command::Status(args) => day_two(webhook_operator::cli::run_status(&args)),
        Command::Renew(args) => day_two(webhook_operator::cli::run_request(
            webhook_operator::cli::Request::Renew,
            &args,
        )),
        Command::Reconcile(args) => day_two(webhook_operator::cli::run_request(
            webhook_operator::cli::Request::Reconcile,
            &args,
        )),
        Command::Pause(args) => day_two(webhook_operator::cli::run_request(
            webhook_operator::cli::Request::Pause,
            &args,
        )),
        Command::Resume(args) => day_two(webhook_operator::cli::run_request(
            webhook_operator::cli::Request::Resume,
            &args,
        )),
        #[cfg(feature = "sandbox")]
        Command::Plan(args) => day_two(webhook_operator::cli::run_plan(&args)),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            // For the executable as it is on disk: shells complete executables. `kubectl whsub <TAB>` is
            // completed by kubectl through this binary installed as `kubectl_complete-whsub`.
            let name = if invoked_as() == "webhook-operator" {
                "webhook-operator"
            } else {
                "kubectl-whsub"
            };
            clap_complete::generate(shell, &mut Cli::command().name(name), name, &mut std::io::stdout());
            Ok(())
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox {
            api_only: true,
            kubeconfig,
            port,
            ..
        } => run_api_only(kubeconfig, port),
        #[cfg(feature = "sandbox")]
        Command::Sandbox {
            kubeconfig,
            port,
            lifetime,
            delivery_interval,
            exit_after,
            no_controller,
            ..
        } => run_sandbox(webhook_operator::sandbox::system::SandboxOptions {
            port,
            kubeconfig,
            lifetime,
            delivery_interval,
            exit_after,
            controller: !no_controller,
        }),
    }
}

#[cfg(feature = "sandbox")]
type Redirect = (
    webhook_operator::controller::endpoints::Origin,
    webhook_operator::controller::endpoints::Origin,
);

#[cfg(feature = "sandbox")]
fn parse_redirect(text: &str) -> Result<Redirect, String> {
    let (from, to) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not FROM=TO, such as https://*.avayacloud.com=http://127.0.0.1:8081"))?;
    Ok((parse_origin(from)?, parse_origin(to)?))
}

fn parse_origin(text: &str) -> Result<webhook_operator::controller::endpoints::Origin, String> {
    webhook_operator::controller::endpoints::Origin::parse(text)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match webhook_operator::api::parse_go_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("\"{text}\" is zero; give a duration such as 30s, 10m or 1h30m")),
        Err(e @ webhook_operator::api::DurationError::TooLong(_)) => Err(e.to_string()),
        Err(_) => Err(format!("\"{text}\" is not a duration such as 30s, 10m or 1h30m")),
    }
}

async fn kube_client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = webhook_operator::cli::read_kubeconfig(&path).map_err(anyhow::Error::msg)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("the kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration: not in a cluster and no usable $KUBECONFIG; pass --kubeconfig")?,
    };
    let mut config = config;
    webhook_operator::controller::identify(&mut config);
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

fn run_controller(
    kubeconfig: Option<PathBuf>,
    config: webhook_operator::controller::Config,
    metrics_addr: std::net::SocketAddr,
    election: Option<webhook_operator::controller::leader::Election>,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = kube_client(kubeconfig).await?;
        let served = webhook_operator::telemetry::serve(metrics_addr)
            .await
            .with_context(|| format!("cannot serve metrics on {metrics_addr}"))?;
        tracing::info!(%served, "serving /metrics, /healthz and /readyz");
        tracing::info!(namespace = %config.operator_namespace, watching = %config.scope.describe(), "webhook-operator starting");
        match election {
            None => {
                let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let asked_by_signal = asked.clone();
                // Without election this replica is the one that acts.
                webhook_operator::telemetry::leader("none", true);
                webhook_operator::controller::run(client, config, async move {
                    webhook_operator::controller::shutdown_signal().await;
                    webhook_operator::telemetry::health().set_stopping();
                    asked_by_signal.store(true, std::sync::atomic::Ordering::SeqCst);
                })
                .await;
                // The controllers end only when asked to; anything else must not look like success.
                if !asked.load(std::sync::atomic::Ordering::SeqCst) {
                    anyhow::bail!("the controller stopped without being asked to");
                }
            }
            Some(election) => {
                // A follower is healthy and ready to take over; only the leader acts.
                webhook_operator::telemetry::health().set_ready();
                let clock = config.clock.clone();
                let leader_client = client.clone();
                let guard = webhook_operator::controller::leader::LeaderGuard::new();
                let mut config = config;
                config.leadership = Some(guard.clone());
                webhook_operator::controller::leader::run_elected(
                    leader_client,
                    election,
                    clock,
                    guard,
                    async {
                        webhook_operator::controller::shutdown_signal().await;
                        webhook_operator::telemetry::health().set_stopping();
                    },
                    move |stop| async move {
                        webhook_operator::controller::run(client, config, async {
                            let _ = stop.await;
                        })
                        .await
                    },
                )
                .await
                .context("stopping so that a new process campaigns again")?;
            }
        }
        tracing::info!("webhook-operator stopped");
        Ok(())
    })
}

#[cfg(feature = "sandbox")]
fn run_sandbox(options: webhook_operator::sandbox::system::SandboxOptions) -> anyhow::Result<()> {
    use webhook_operator::sandbox::system::{Sandbox, plain};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let sandbox = Sandbox::start(options).await?;
        println!("{}", sandbox.banner());
        let rows = sandbox.run().await;
        for row in &rows {
            println!("{}", plain(row, true));
        }
        Ok(())
    })
}

#[cfg(feature = "sandbox")]
fn run_api_only(kubeconfig: PathBuf, port: u16) -> anyhow::Result<()> {
    use webhook_operator::sandbox::kube::{Emulator, EmulatorOptions};
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let options = EmulatorOptions {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            ..Default::default()
        };
        let emulator = Emulator::start(options)
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        emulator
            .write_kubeconfig(&kubeconfig)
            .with_context(|| format!("cannot write the kubeconfig to {}", kubeconfig.display()))?;
        println!(
            "emulated Kubernetes API at {}; kubeconfig written to {} (kubectl --kubeconfig {} get ns); Ctrl-C stops it",
            emulator.url(),
            kubeconfig.display(),
            kubeconfig.display()
        );
        webhook_operator::controller::shutdown_signal().await;
        emulator.stop().await;
        Ok(())
    })
}

/// Runs a day-2 command and prints what it answers (on failure, its lines and a non-zero exit).
fn day_two(
    command: impl std::future::Future<Output = Result<String, webhook_operator::cli::CliError>>,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let printed = runtime.block_on(command).map_err(anyhow::Error::msg)?;
    if !printed.is_empty() {
        println!("{}", printed.trim_end());
    }
    Ok(())
}

fn print_crds(output_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = webhook_operator::api::crds();
    match output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(webhook_operator::api::crd_file_name(crd));
                std::fs::write(&path, webhook_operator::api::crd_yaml(crd)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for crd in &crds {
                let written = write!(out, "---\n{}", webhook_operator::api::crd_yaml(crd)?).and_then(|()| out.flush());
                match written {
                    Ok(()) => {}
                    // `crds | head`: the reader has what it wanted; stop quietly, as Unix tools do.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("cannot write the CRDs to standard output"),
                }
            }
        }
    }
    Ok(())
}
