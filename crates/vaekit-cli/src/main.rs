//! The `vaekit` binary.

mod cli;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // burn loads optimiser state onto `Device::default()`, which prefers a GPU backend when
    // one is compiled in; make it the device the user chose. Sound here: no other thread runs.
    unsafe { std::env::set_var("BURN_DEVICE", cli.device.burn_device_name()) };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
