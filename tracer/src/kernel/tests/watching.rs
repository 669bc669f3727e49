//! The watched-process bitmap: what user space sets at start, the fork hook extends to
//! children and threads, and the exit hook clears.
use std::{os::fd::AsRawFd, process::Command, sync::mpsc, thread, time::Instant};

use super::{Kernel, WAIT};
use crate::kernel::events::KernelEvent;

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

/// A watched process that sets up an io_uring is reported with the ring's descriptor:
/// what it submits through the ring bypasses the capture, and user space says so. A
/// refused setup reports nothing.
#[test]
fn a_ring_set_up_by_a_watched_process_is_reported() {
    let mut kernel = Kernel::load();
    // struct io_uring_params is 120 bytes; zeroed asks for defaults. The refused call
    // comes first: had it been reported, its event would be the one collected.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup writes the ring's parameters into `params`, which is as
    // large as the kernel's struct; entries 0 is refused with EINVAL.
    let (refused, ring) = unsafe {
        (
            libc::syscall(libc::SYS_io_uring_setup, 0, params.as_mut_ptr()),
            libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()),
        )
    };
    assert_eq!(refused, -1);
    assert!(
        ring >= 0,
        "io_uring_setup: {}",
        std::io::Error::last_os_error()
    );
    let reported = kernel.collect_any(1, |event| match event {
        KernelEvent::IoUring { header } => Some((header, header.fd)),
        _ => None,
    });
    // SAFETY: closes the ring this test made.
    unsafe { libc::close(ring as i32) };
    assert_eq!(
        reported.iter().map(|(_, fd)| *fd).collect::<Vec<_>>(),
        [ring as i32]
    );
}

/// A process that accepts on a watched port without being watched (its listener came
/// from elsewhere) is watched from that accept, and user space is told as for a listen.
#[test]
fn an_unwatched_process_that_accepts_on_a_watched_port_becomes_watched() {
    let mut kernel = Kernel::load();
    let pid = std::process::id();
    kernel.loaded.tgids.unwatch(pid);
    assert!(!kernel.loaded.tgids.contains(pid));
    let (_client, server) = kernel.connection();
    assert!(kernel.loaded.tgids.contains(pid), "watched from its accept");
    let told = kernel.collect_any(1, |event| match event {
        KernelEvent::Listen { header } if header.fd >= 0 => Some((header, header.fd)),
        _ => None,
    });
    assert_eq!(
        told.iter().map(|(_, fd)| *fd).collect::<Vec<_>>(),
        [server.as_raw_fd()]
    );
}

/// A process that receives a connection on a watched port over a unix socket without
/// being watched (a worker handed connections by the process that accepts them) is
/// watched from that message, and user space is told with the descriptor it received.
/// A message that passes a descriptor of anything else changes nothing.
#[test]
fn an_unwatched_process_that_receives_a_watched_connection_becomes_watched() {
    let mut kernel = Kernel::load();
    let pid = std::process::id();
    let (_client, server) = kernel.connection();
    let (left, right) = std::os::unix::net::UnixStream::pair().unwrap();
    kernel.loaded.tgids.unwatch(pid);

    // A descriptor that is not a connection: the pipe end of a unix socket.
    send_fd(&left, right.as_raw_fd());
    let (other, _) = recv_fd(&right);
    assert!(
        !kernel.loaded.tgids.contains(pid),
        "no connection was passed"
    );

    send_fd(&left, server.as_raw_fd());
    let (received, _) = recv_fd(&right);
    assert!(
        kernel.loaded.tgids.contains(pid),
        "watched from the message"
    );
    let told = kernel.collect_any(1, |event| match event {
        KernelEvent::Listen { header } if header.fd >= 0 => Some((header, header.fd)),
        _ => None,
    });
    assert_eq!(
        told.iter().map(|(_, fd)| *fd).collect::<Vec<_>>(),
        [received.as_raw_fd()]
    );
    drop(other);
}

/// A receiver with `SO_PASSCRED` gets its sender's credentials in a control message
/// before the descriptors: the connection is still found.
#[test]
fn a_connection_received_after_the_senders_credentials_is_watched() {
    let kernel = Kernel::load();
    let pid = std::process::id();
    let (_client, server) = kernel.connection();
    let (left, right) = std::os::unix::net::UnixStream::pair().unwrap();
    let on: i32 = 1;
    // SAFETY: sets an integer option on a socket this test owns.
    let set = unsafe {
        libc::setsockopt(
            right.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    kernel.loaded.tgids.unwatch(pid);
    send_fd(&left, server.as_raw_fd());
    let (_received, types) = recv_fd(&right);
    assert_eq!(types, [libc::SCM_CREDENTIALS, libc::SCM_RIGHTS]);
    assert!(
        kernel.loaded.tgids.contains(pid),
        "watched from the message"
    );
}

/// A one-byte message through `iov` with `control` for its control messages.
fn message(iov: &mut libc::iovec, control: &mut [u64]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; the fields set below are the ones used.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control);
    msg
}

/// Sends one byte with `fd` attached (`SCM_RIGHTS`).
fn send_fd(socket: &std::os::unix::net::UnixStream, fd: i32) {
    let mut byte = [1u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr (16 bytes) and one descriptor, padded to 8.
    let mut control = [0u64; 3];
    let msg = message(&mut iov, &mut control);
    // SAFETY: the control buffer holds one header and one descriptor (CMSG_SPACE of
    // an int is 24 bytes on x86_64).
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(4) as usize;
        libc::CMSG_DATA(header).cast::<i32>().write_unaligned(fd);
        assert_eq!(libc::sendmsg(socket.as_raw_fd(), &msg, 0), 1, "sendmsg");
    }
}

/// Receives one byte and the descriptor sent with it; the types of the control
/// messages that came with it, in order.
fn recv_fd(socket: &std::os::unix::net::UnixStream) -> (std::os::fd::OwnedFd, Vec<i32>) {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    let mut msg = message(&mut iov, &mut control);
    let mut types = Vec::new();
    let mut fd = None;
    // SAFETY: recvmsg fills what the message points to; the headers walked are the
    // ones it filled in, and the received descriptor is owned at once.
    unsafe {
        assert_eq!(libc::recvmsg(socket.as_raw_fd(), &mut msg, 0), 1, "recvmsg");
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            assert_eq!((*header).cmsg_level, libc::SOL_SOCKET);
            types.push((*header).cmsg_type);
            if (*header).cmsg_type == libc::SCM_RIGHTS {
                let raw = libc::CMSG_DATA(header).cast::<i32>().read_unaligned();
                fd = Some(std::os::fd::FromRawFd::from_raw_fd(raw));
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    (fd.expect("no descriptor came with the byte"), types)
}
