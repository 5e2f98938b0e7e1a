//! Writing to standard output and standard error without panicking when the reader goes away.
//!
//! `println!` panics when stdout is a closed pipe (`vaekit eval --json | head -c 5`), a full
//! disk (`> /dev/full`) or a terminal that hung up. Here a line to stdout returns the error
//! (naming standard output), and `main` ends quietly with status 0 on a broken pipe, as
//! ripgrep and other Unix tools do; a line to stderr is best effort (there is nowhere left to
//! report its failure).

use std::fmt;
use std::io::{self, Write};

/// Writes one line to standard output.
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| io::Error::new(e.kind(), format!("writing to standard output: {e}")))
}

/// Writes one line to standard error, ignoring failure.
pub fn err_line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Whether `e` (or one of its causes) is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns an `io::Result` instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::out::err_line(format_args!($($t)*)) };
}
