//! The state of the link to the broker, reported on stderr when it changes: unreachable
//! (with the backlog, repeated every report interval), back, and caught up.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use super::counters::Backlog;

pub struct Link {
    state: State,
    servers: String,
    spool_dir: PathBuf,
    report_every: Duration,
    last_report: Instant,
}

enum State {
    Starting,
    Up {
        /// Since when a backlog is being published.
        catching_up: Option<Instant>,
    },
    Down {
        since: Instant,
        reason: String,
    },
}

impl Link {
    pub fn new(servers: String, spool_dir: PathBuf, report_every: Duration) -> Self {
        Self {
            state: State::Starting,
            servers,
            spool_dir,
            report_every,
            last_report: Instant::now(),
        }
    }

    /// Connected, and the stream is there.
    pub fn up(&mut self, backlog: Backlog) {
        let servers = &self.servers;
        match &self.state {
            State::Down { since, .. } => eprintln!(
                "tracer: nats: connected to {servers} again after {:.1} s; publishing the backlog of {backlog}",
                since.elapsed().as_secs_f64()
            ),
            State::Starting | State::Up { .. } if backlog.records > 0 => eprintln!(
                "tracer: nats: connected to {servers}; publishing the backlog of {backlog} from the spool"
            ),
            State::Starting | State::Up { .. } => {
                eprintln!("tracer: nats: connected to {servers}")
            }
        }
        self.state = State::Up {
            catching_up: (backlog.records > 0).then(Instant::now),
        };
        self.last_report = Instant::now();
    }

    /// A connection attempt or a connection failed.
    pub fn down(&mut self, reason: String, backlog: Backlog) {
        let dir = self.spool_dir.display();
        match &mut self.state {
            State::Down {
                since,
                reason: last,
            } if *last == reason => {
                if self.last_report.elapsed() >= self.report_every {
                    eprintln!(
                        "tracer: nats: still failing after {:.0} s ({reason}); backlog {backlog} in the spool {dir}",
                        since.elapsed().as_secs_f64()
                    );
                    self.last_report = Instant::now();
                }
            }
            State::Down { reason: last, .. } => {
                eprintln!("tracer: nats: {reason}; backlog {backlog} in the spool {dir}");
                *last = reason;
                self.last_report = Instant::now();
            }
            State::Starting | State::Up { .. } => {
                eprintln!(
                    "tracer: nats: {reason}; records are kept in the spool {dir} (backlog {backlog}) \
                     and published once it works again"
                );
                self.state = State::Down {
                    since: Instant::now(),
                    reason,
                };
                self.last_report = Instant::now();
            }
        }
    }

    /// Acknowledgements came in (or there is nothing to send).
    pub fn progress(&mut self, backlog: Backlog) {
        let State::Up {
            catching_up: Some(since),
        } = self.state
        else {
            return;
        };
        if backlog.records == 0 {
            eprintln!(
                "tracer: nats: caught up: the backlog is published and acknowledged ({:.1} s)",
                since.elapsed().as_secs_f64()
            );
            self.state = State::Up { catching_up: None };
        } else if self.last_report.elapsed() >= self.report_every {
            eprintln!("tracer: nats: publishing the backlog: {backlog} left");
            self.last_report = Instant::now();
        }
    }
}
