//! The `vaekit` binary.

use std::process::ExitCode;

use clap::Parser;
use vaekit::device::{DeviceChoice, first_device_kind};
use vaekit::ops::pool::join_pool;
use vaekit::ops::{Precision, set_precision};
use vaekit_cli::{cli, commands, errln, out};

/// mimalloc keeps freed memory for reuse. glibc's malloc returns every freed block above its
/// mmap threshold to the kernel at once, so each training step paid page faults, zeroed pages
/// and cross-core TLB shootdowns for its buffers: a third of the conv model's step on an Intel
/// Xeon with 2 cores (`vaekit bench`: 4,200 img/s with glibc, 6,700 with glibc told to keep
/// freed memory, 7,500 with mimalloc; peak RSS 200 -> 270 MiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay` (not among the constants libmimalloc-sys names).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never hand freed memory back to the kernel: by default mimalloc purges it after a second,
/// and the next steps fault it back in as zeroed 2 MiB pages (2,400 page faults in a short
/// `vaekit bench` run, 530 without purging; the process's memory stays at its peak instead).
fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's options, which it reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = cli::Cli::parse();
    if cli.command.runs_kernels_on_main_thread() {
        // Nothing has used rayon yet, so the pool can only fail to start its threads.
        if let Err(e) = join_pool(None) {
            errln!("error: cannot start the CPU threads: {e}");
            return ExitCode::FAILURE;
        }
    }
    // burn loads optimiser state onto `Device::default()`, which prefers a GPU backend when
    // one is compiled in; make it the device the user chose (for `train --devices`, the first,
    // where the networks live; burn would move the state there at the first step anyway).
    // Sound here: no other thread runs.
    let main_device = match &cli.command {
        cli::Command::Train(a) => a.devices.as_deref().and_then(first_device_kind),
        _ => None,
    };
    let burn_device = main_device.unwrap_or(cli.device).burn_device_name();
    unsafe { std::env::set_var("BURN_DEVICE", burn_device) };
    if cli.precision == Precision::Bf16 {
        if cli.device != DeviceChoice::Cpu {
            errln!(
                "vaekit: --precision bf16 applies to the CPU kernels; on {} products stay fp32",
                cli.device.burn_device_name()
            );
        } else if set_precision(Precision::Bf16) != Precision::Bf16 {
            errln!("vaekit: --precision bf16: this CPU has no AVX512-BF16; running in fp32");
        }
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`vaekit eval --json | head`): end quietly, as other
        // Unix tools do.
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
