//! The event loop's scheduling priority: lowest while it keeps up, raised again as
//! soon as it falls behind.
//!
//! On a saturated host the tracer costs the server more throughput than its CPU time
//! explains: each time it takes a CPU from the server or its client, the other stage of
//! that pipeline runs dry (docs/design.md, "Where the rest goes"). At the lowest
//! priority it uses the gaps instead, but a tracer starved for long enough overflows
//! its ring, which an audit trail must not do (nice 19 alone lost 7,915 and 112,729
//! events in two 5 s rounds). So the loop runs at nice 19, and a watchdog thread at the
//! priority the tracer was started with raises it back whenever no drain has ended for
//! [`LAG`]: the ring (16 MiB, about 150 ms of a saturated nginx's events) is far from
//! full by then. The loop lowers itself again after a drain that found little waiting.
//! Records wait at most about [`LAG`] longer than before.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// The loop's nice value while it keeps up: the lowest.
const RELAXED_NICE: i32 = 19;
/// A drain unfinished this long (or none begun) raises the loop's priority.
const LAG: Duration = Duration::from_millis(50);
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(5);
/// A drain that took fewer events than this found the loop caught up.
const CAUGHT_UP_EVENTS: u64 = 4_096;

struct Shared {
    /// [`LAG`], or a test's own.
    lag: Duration,
    /// Nanoseconds since `epoch` when the last drain ended.
    drained_at: AtomicU64,
    raised: AtomicBool,
    stop: AtomicBool,
    /// Times the watchdog raised the loop's priority.
    raises: AtomicU64,
}

pub struct Priority {
    shared: Arc<Shared>,
    epoch: Instant,
    loop_tid: libc::pid_t,
    /// The nice value the tracer was started with, and the loop's while it keeps up.
    own: i32,
    relaxed: i32,
    watchdog: Option<JoinHandle<()>>,
}

impl Priority {
    /// Lowers the calling thread (the event loop) and starts its watchdog.
    pub fn start() -> Result<Self> {
        Self::start_with(LAG)
    }

    fn start_with(lag: Duration) -> Result<Self> {
        // SAFETY: gettid has no preconditions.
        let loop_tid = unsafe { libc::gettid() };
        let own = nice_of(loop_tid)?;
        let relaxed = RELAXED_NICE.max(own);
        let shared = Arc::new(Shared {
            lag,
            drained_at: AtomicU64::new(0),
            raised: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            raises: AtomicU64::new(0),
        });
        let epoch = Instant::now();
        set_nice(loop_tid, relaxed)?;
        let watchdog = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("priority-watch".to_owned())
                .spawn(move || watch(&shared, epoch, loop_tid, own))
                .context("starting the priority watchdog")?
        };
        Ok(Self {
            shared,
            epoch,
            loop_tid,
            own,
            relaxed,
            watchdog: Some(watchdog),
        })
    }

    /// Called after each drain with the number of events it took.
    pub fn drained(&self, events: u64) {
        self.shared
            .drained_at
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if events < CAUGHT_UP_EVENTS && self.shared.raised.swap(false, Ordering::Relaxed) {
            // Failing to lower it leaves the tracer at its own priority: harmless.
            let _ = set_nice(self.loop_tid, self.relaxed);
        }
    }

    /// Times the loop fell behind and was raised.
    pub fn raises(&self) -> u64 {
        self.shared.raises.load(Ordering::Relaxed)
    }
}

impl Drop for Priority {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
        // The shutdown's last drain and summary run at the tracer's own priority.
        let _ = set_nice(self.loop_tid, self.own);
    }
}

fn watch(shared: &Shared, epoch: Instant, loop_tid: libc::pid_t, own: i32) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(WATCH_EVERY);
        let now = epoch.elapsed().as_nanos() as u64;
        let drained_at = shared.drained_at.load(Ordering::Relaxed);
        let lagging = now.saturating_sub(drained_at) > shared.lag.as_nanos() as u64;
        if lagging && !shared.raised.swap(true, Ordering::Relaxed) {
            if let Err(e) = set_nice(loop_tid, own) {
                log::warn!("cannot raise the event loop's priority: {e:#}");
            }
            shared.raises.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn nice_of(tid: libc::pid_t) -> Result<i32> {
    // getpriority returns -1 both as a value and on error: errno tells them apart.
    // SAFETY: errno is this thread's; getpriority has no memory preconditions.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: as above.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if nice == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(std::io::Error::last_os_error()).context("reading the tracer's priority");
    }
    Ok(nice)
}

fn set_nice(tid: libc::pid_t, nice: i32) -> Result<()> {
    // On Linux PRIO_PROCESS with a thread id sets that thread alone.
    // SAFETY: no memory is passed.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting the event loop's nice value to {nice}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop runs lowered, is raised once it stops draining (as when starved or
    /// behind), lowered again by a drain that found little, and ends at its own
    /// priority. (Raising needs CAP_SYS_NICE: the tests run as root, as CI does.)
    #[test]
    fn the_loop_is_lowered_raised_when_it_lags_and_lowered_again_once_caught_up() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let own = nice_of(tid).unwrap();
        // Long enough that no check below races the watchdog on a busy machine.
        let lag = Duration::from_millis(500);
        let priority = Priority::start_with(lag).unwrap();
        priority.drained(0);
        assert_eq!(nice_of(tid).unwrap(), RELAXED_NICE.max(own));
        let deadline = Instant::now() + Duration::from_secs(10);
        while priority.raises() == 0 && Instant::now() < deadline {
            std::thread::sleep(WATCH_EVERY);
        }
        assert_eq!(priority.raises(), 1, "no drain for {lag:?} raises it");
        assert_eq!(nice_of(tid).unwrap(), own);
        priority.drained(CAUGHT_UP_EVENTS);
        assert_eq!(nice_of(tid).unwrap(), own, "a deep drain keeps it raised");
        priority.drained(1);
        assert_eq!(nice_of(tid).unwrap(), RELAXED_NICE.max(own));
        drop(priority);
        assert_eq!(nice_of(tid).unwrap(), own);
    }
}
