//! Standard output, the one way every command writes it. A reader that stops early
//! (`jobq jobs list | head -1`) closes the pipe: the command then ends quietly and
//! successfully (the reader has what it wanted), never with a panic.

use std::fmt;
use std::io::{self, Write};

/// The reader of standard output went away: not a failure of the command.
#[derive(Debug)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for Closed {}

/// Writes one line to standard output; a closed pipe becomes [`Closed`], which `main` turns
/// into a quiet successful exit.
pub fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to standard output")),
    }
}

/// A line from a process that runs on (a worker, the dashboard): nobody reading its output is
/// no reason to stop serving, so a failed write is dropped.
pub fn note_line(args: fmt::Arguments<'_>) {
    let _ = line(args);
}

/// Whether `error` is only standard output closing under the command.
pub fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Closed>())
}

/// An error line on standard error; a closed standard error loses it rather than panicking.
pub fn error_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// `say!(...)`: [`line`], returning from the calling function if it fails.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}

/// `note!(...)`: [`note_line`].
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::note_line(format_args!($($arg)*))
    };
}

pub(crate) use {note, say};
