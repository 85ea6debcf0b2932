//! `mallctl`: validate and render Malls offline, print the CRD.
//!
//! Contract: exit 0 on success, 1 when input is invalid or a command fails (with one line per
//! problem on stdout for `validate`, a message on stderr otherwise), 2 on usage errors.

mod input;
mod render;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "mallctl", version, about = "Operate Malls: one resource, a whole e-commerce stack.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Mall CustomResourceDefinition (YAML), as installed by the Helm chart.
    Crd,
    /// Check Mall manifests exactly as the API server would; one line per problem:
    /// `FILE: spec.path.to.field: message`. Exit 0 when all are valid, 1 otherwise.
    Validate {
        /// Manifest files (YAML or JSON, several documents allowed; `-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<String>,
    },
    /// Print the Kubernetes objects the operator would create for a Mall.
    Render {
        /// Manifest file (`-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true)]
        file: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// YAML documents separated by `---`.
    Yaml,
    /// A JSON `List`.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => render::print_crd(),
        Command::Validate { files } => {
            let mut stdout = std::io::stdout().lock();
            match validate::run(&files, &mut stdout) {
                Ok((_, true)) => Ok(()),
                Ok((_, false)) => return ExitCode::from(1),
                Err(e) => Err(anyhow::anyhow!("writing output: {e}")),
            }
        }
        Command::Render { file, output } => render::run(&file, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mallctl: {e:#}");
            ExitCode::from(1)
        }
    }
}
