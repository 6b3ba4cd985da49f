//! Command-line output shared by the `offer-bandit` and `offer-sim`
//! binaries: a closed stdout (`offer-bandit report | head -1`) ends the
//! process quietly, with the status a shell reports for SIGPIPE, instead of
//! a panic.

/// Exit status after the reader of stdout went away: what a shell reports
/// for a process killed by SIGPIPE.
pub const BROKEN_PIPE_EXIT: i32 = 128 + 13;

/// Installs a panic hook that exits quietly when `println!` fails on a
/// closed pipe (Rust ignores SIGPIPE, so the write fails and `println!`
/// panics); every other panic goes to the default hook. Writers that return
/// errors are checked with [`is_broken_pipe`].
pub fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        default(info);
    }));
}

/// Whether an error, or any error that caused it, is a write to a closed
/// pipe (callers then exit with [`BROKEN_PIPE_EXIT`]).
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = c.source();
    }
    false
}
