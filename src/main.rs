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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { output_dir } => print_crds(output_dir),
    }
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
