//! The `webhook-operator` command line.

use std::path::PathBuf;

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

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (one document per CRD), or write one file each.
    Crds {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// Run the sandbox's emulated Kubernetes API on 127.0.0.1 until interrupted.
    Sandbox {
        /// Start only the emulated Kubernetes API (the provider simulators and controller come later).
        #[arg(long, required = true)]
        api_only: bool,
        /// Where to write the kubeconfig that points at it.
        #[arg(long, value_name = "PATH", default_value = "webhook-operator-sandbox.kubeconfig")]
        kubeconfig: PathBuf,
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { output_dir } => print_crds(output_dir),
        Command::Sandbox {
            api_only: _,
            kubeconfig,
            port,
        } => run_api_only(kubeconfig, port),
    }
}

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
        tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
        emulator.stop().await;
        Ok(())
    })
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
            for crd in &crds {
                print!("---\n{}", webhook_operator::api::crd_yaml(crd)?);
            }
        }
    }
    Ok(())
}
