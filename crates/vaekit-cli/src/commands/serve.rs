//! `vaekit serve`: the browser page and JSON API of `vaekit-serve`.

use std::io::Write;

use anyhow::{Result, anyhow};
use vaekit::device::DeviceChoice;
use vaekit_serve::{ServeOptions, serve};

use crate::cli::ServeArgs;

pub fn run(a: ServeArgs, device: DeviceChoice) -> Result<()> {
    let opts = ServeOptions {
        run: a.run,
        host: a.host,
        port: a.port,
        device,
    };
    serve(
        &opts,
        |w| crate::errln!("warning: {w}"),
        |addr| {
            // A closed stdout does not stop the server.
            let _ = crate::outln!(
                "serving {} at http://{addr}/ (Ctrl-C stops)",
                opts.run.display()
            );
            let _ = std::io::stdout().flush();
        },
    )
    .map_err(|e| anyhow!(e))
}
