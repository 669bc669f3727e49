//! The watched-process bitmap: what user space sets at start, the fork hook extends to
//! children and threads, and the exit hook clears.
use std::{process::Command, sync::mpsc, thread, time::Instant};

use super::{Kernel, WAIT};

/// Waits until `pid`'s bit reads `watched`, or fails after WAIT.
fn until(kernel: &Kernel, pid: u32, watched: bool) {
    let start = Instant::now();
    while kernel.loaded.tgids.contains(pid) != watched {
        assert!(
            start.elapsed() < WAIT,
            "pid {pid} should be {} by now",
            if watched { "watched" } else { "unwatched" }
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn children_and_threads_of_a_watched_process_are_watched_until_they_exit() {
    let kernel = Kernel::load();
    assert!(kernel.loaded.tgids.contains(std::process::id()));

    // A child process: set by the fork hook before spawn() returns, cleared at its exit.
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawning sleep");
    let pid = child.id();
    assert!(
        kernel.loaded.tgids.contains(pid),
        "a forked child inherits watching"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    until(&kernel, pid, false);

    // A thread: the fork hook sees clone(CLONE_THREAD) too.
    let (tid_tx, tid_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    assert!(kernel.loaded.tgids.contains(tid), "a new thread is watched");
    // Its neighbours in the same word of the bitmap keep their bits.
    assert!(kernel.loaded.tgids.contains(std::process::id()));
    stop_tx.send(()).unwrap();
    worker.join().unwrap();
    until(&kernel, tid, false);
    assert!(
        kernel.loaded.tgids.contains(std::process::id()),
        "a thread's exit leaves its process watched"
    );
}
