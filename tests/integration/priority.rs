//! What the server asks of the kernel for the core it shares: the writer
//! thread steps aside for requests (`--writer-nice`), so that a request
//! preempts a write group's commit, and transparent huge pages are off
//! (`--transparent-huge-pages` leaves them on).

use crate::support::{TestServer, select, stat_field};

/// The nice values of `pid`'s threads named `name` (`/proc`, Linux),
/// leaving out threads that exit while they are read.
fn nice_of_threads(pid: u32, name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let Ok(task) = task else { continue };
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Field 19: nice.
        nice.push(
            stat_field(&stat, 19)
                .expect("nice field")
                .parse()
                .expect("nice"),
        );
    }
    nice
}

/// A server started with `args`, once it has made a decision (its
/// writer thread running).
async fn deciding_server(args: &[&str]) -> TestServer {
    let server = TestServer::start(None, args);
    let mut client = server.offers().await;
    client
        .select_offer(select("coffee", &[("tier", "gold")]))
        .await
        .expect("select");
    server
}

/// The writer runs 5 nice levels below the request handlers by default,
/// `--writer-nice 0` leaves it equal, and the server serves either way.
#[tokio::test]
async fn the_writer_steps_aside_for_requests_by_default() {
    for (args, step) in [(&[][..], 5), (&["--writer-nice", "0"][..], 0)] {
        let server = deciding_server(args).await;
        let handlers = nice_of_threads(server.pid(), "tokio-rt-worker");
        let writer = nice_of_threads(server.pid(), "offer-bandit-wr");
        assert!(!handlers.is_empty(), "no request handler threads found");
        assert_eq!(writer.len(), 1, "one writer thread");
        let expected = (handlers[0] + step).min(19);
        assert_eq!(
            writer[0], expected,
            "{args:?}: writer nice {} against handlers' {}",
            writer[0], handlers[0]
        );
    }
}

/// `THP_enabled` of `/proc/{pid}/status`: 0 once a process has turned
/// transparent huge pages off for itself (Linux 5.0 and later).
fn thp_enabled(pid: &str) -> Option<u8> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))?
        .trim()
        .parse()
        .ok()
}

/// By default the server turns transparent huge pages off for itself;
/// `--transparent-huge-pages` leaves the setting it started with (this
/// test's own, which it inherits: on).
#[tokio::test]
async fn transparent_huge_pages_are_off_unless_asked_for() {
    // A server inherits the setting: where it is off already (a parent
    // turned it off, or a kernel without huge pages), both cases would read
    // 0 and prove nothing.
    match thp_enabled("self") {
        Some(1) => {}
        found => {
            eprintln!("skipped: THP_enabled of this test process is {found:?}, not 1");
            return;
        }
    }
    for (args, expected) in [(&[][..], 0), (&["--transparent-huge-pages"][..], 1)] {
        let server = deciding_server(args).await;
        assert_eq!(
            thp_enabled(&server.pid().to_string()),
            Some(expected),
            "{args:?}"
        );
    }
}
