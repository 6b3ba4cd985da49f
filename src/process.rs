//! The process and the kernel: what the server asks of the scheduler and
//! the memory manager (the writer thread's nice value, transparent huge
//! pages off), and its own resource use, read from `/proc` at scrape time:
//! the standard `process_*` series of `/metrics` (the names Prometheus' own
//! client libraries use, so that stock dashboards work). Where `/proc` is
//! missing (not Linux) the series are left out.

use std::fmt::Write as _;

/// Turns transparent huge pages off for this process (Linux; elsewhere,
/// nothing): its anonymous memory then faults in 4 KiB pages, not 2 MiB
/// ones. The allocator asks for huge pages for its arenas, and sled
/// allocates a fresh 512 KiB I/O buffer each time it seals one (twice per
/// write group); each first touch of a huge page zeroes 2 MiB, on the core
/// that serves requests, evicting what they had cached. Measured on one
/// core (BENCHMARKS.md): SelectOffer/Health/Check on bench-k12-d64 0.495
/// with huge pages, 0.521 without (six passes each, alternating).
/// Databases commonly advise the same. A failure is logged and changes
/// nothing else.
pub(crate) fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    match rustix::thread::disable_transparent_huge_pages(true) {
        Ok(()) => tracing::debug!("transparent huge pages off for this process"),
        Err(e) => tracing::warn!(error = %e, "could not turn transparent huge pages off"),
    }
}

/// Adds `niceness` to the calling thread's nice value (Linux, where a
/// thread has its own; elsewhere, and for 0, nothing). Raising one's own
/// nice value needs no privilege; a failure is logged and changes nothing
/// else. Threads this one starts inherit the value: sled starts its first
/// seven I/O threads when the store opens (before the writer), but more on
/// demand from whichever thread writes, so under a long burst some of
/// them can run niced too.
pub(crate) fn lower_this_threads_priority(niceness: i32) {
    if niceness == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = Some(rustix::thread::gettid());
        let set = getpriority_process(tid).and_then(|now| {
            let nice = now.saturating_add(niceness).clamp(-20, 19);
            setpriority_process(tid, nice).map(|()| nice)
        });
        match set {
            Ok(nice) => tracing::debug!(nice, "writer thread's nice value"),
            Err(e) => tracing::warn!(error = %e, "could not lower the writer thread's priority"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::debug!(niceness, "--writer-nice applies on Linux only");
}

/// The series, their kind and `# HELP` text (written here, not through the
/// recorder: CPU seconds is a fractional counter).
const PROCESS_SERIES: [(&str, &str, &str); 7] = [
    (
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    (
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    (
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    (
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors (the soft limit).",
    ),
    (
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
    ),
];

/// One reading of the process's resource use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    /// Seconds after boot.
    start_after_boot: f64,
}

/// Appends the `process_*` series, with `# HELP` and `# TYPE`, to `out`.
pub(crate) fn render(out: &mut String) {
    let Some(stat) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s, ticks_per_second(), page_size()))
    else {
        return;
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| parse_max_fds(&s));
    let values = [
        Some(stat.cpu_seconds),
        Some(stat.resident_bytes as f64),
        Some(stat.virtual_bytes as f64),
        open_fds,
        max_fds,
        Some(stat.threads as f64),
        boot.map(|b| b as f64 + stat.start_after_boot),
    ];
    for ((name, kind, help), value) in PROCESS_SERIES.iter().zip(values) {
        if let Some(v) = value {
            // Prometheus spells infinity "+Inf"; Rust writes "inf".
            let v = if v.is_infinite() {
                "+Inf".to_owned()
            } else {
                v.to_string()
            };
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        }
    }
}

fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Reads `/proc/self/stat` (see proc(5)); the command name may hold spaces
/// and parentheses, so the fields are counted from its closing `)`.
pub(crate) fn parse_stat(stat: &str, ticks: u64, page: u64) -> Option<Sample> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is at index 0.
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    let ticks = ticks.max(1) as f64;
    Some(Sample {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        threads: num(20)?,
        start_after_boot: num(22)? as f64 / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)?.saturating_mul(page),
    })
}

/// The `btime` line of `/proc/stat`: boot time, Unix seconds.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(f64::INFINITY),
        n => n.parse::<u64>().ok().map(|n| n as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "4242 (offer (bandit) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 150 0 0 20 0 9 0 123400 1048576000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat, 100, 4096).expect("parsed");
        assert_eq!(s.cpu_seconds, 4.0);
        assert_eq!(s.threads, 9);
        assert_eq!(s.start_after_boot, 1234.0);
        assert_eq!(s.virtual_bytes, 1_048_576_000);
        assert_eq!(s.resident_bytes, 5000 * 4096);
        assert_eq!(parse_stat("no paren", 100, 4096), None);
        assert_eq!(parse_stat("1 (x) S 1 2", 100, 4096), None);
    }

    #[test]
    fn boot_time_and_fd_limit_are_read() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            Some(f64::INFINITY)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let mut out = String::new();
        render(&mut out);
        for (name, _, _) in PROCESS_SERIES {
            assert!(out.contains(&format!("# HELP {name} ")), "{out}");
            assert!(out.contains(&format!("\n{name} ")), "{out}");
        }
    }
}
