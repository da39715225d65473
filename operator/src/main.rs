//! `roundtable`: the command-line entry point of Roundtable.
//!
//! Today it prints the CRDs for `kubectl apply`; the operator, the control-plane API and the
//! local all-in-one mode become subcommands here as they land.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "roundtable",
    version,
    about = "Live virtual events on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the roundtable.dev CustomResourceDefinitions as YAML
    /// (`roundtable crds | kubectl apply -f -`).
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", roundtable_crds::generate::all_yaml()),
    }
    Ok(())
}
