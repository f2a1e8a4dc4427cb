//! `cxr`: train, audit and report chest X-ray pneumonia classifiers (see `cxr --help`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cxr::cli::Cli::parse();
    cxr::logging::tune_process();
    cxr::logging::init_tracing(cli.verbose);
    match cxr::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let err = anyhow::Error::from(err);
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}
