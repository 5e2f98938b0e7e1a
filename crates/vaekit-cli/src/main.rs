//! The `vaekit` binary.

mod cli;
mod commands;
mod progress;

use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse. glibc's malloc returns every freed block above its
/// mmap threshold to the kernel at once, so each training step paid page faults, zeroed pages
/// and cross-core TLB shootdowns for its buffers: a third of the conv model's step on an Intel
/// Xeon with 2 cores (`vaekit bench`: 4,200 img/s with glibc, 6,700 with glibc told to keep
/// freed memory, 7,500 with mimalloc; peak RSS 200 -> 270 MiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
