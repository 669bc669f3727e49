//! Each traced syscall, and descriptor reuse, over a loopback pair.
use std::{
    io::{IoSlice, IoSliceMut, Read, Write},
    os::fd::AsRawFd,
};

use tracer_common::Direction;

use super::{Kernel, Seen, Transfer, data};
use crate::kernel::events::{BodyCopy, ConnectionEvent};

#[test]
fn each_traced_syscall_yields_its_bytes_and_close_ends_the_connection() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    let mut buf = [0u8; 64];

    client.write_all(b"GET /read").unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 9);
    server.write_all(b"HTTP/1.1 200").unwrap();
    client.write_all(b"readv!").unwrap();
    let (mut a, mut b) = ([0u8; 2], [0u8; 8]);
    let n = server
        .read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)])
        .unwrap();
    assert_eq!(n, 6);
    let written = server
        .write_vectored(&[IoSlice::new(b"wri"), IoSlice::new(b"tev")])
        .unwrap();
    assert_eq!(written, 6);
    // SAFETY: plain socket calls on a descriptor this test owns, into local buffers;
    // IoSlice and IoSliceMut are ABI-compatible with iovec.
    unsafe {
        assert_eq!(libc::send(fd, b"sendto".as_ptr().cast(), 6, 0), 6);
        client.write_all(b"recvfrom").unwrap();
        assert_eq!(libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0), 8);
        let mut parts = [IoSlice::new(b"send"), IoSlice::new(b"msg")];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = parts.as_mut_ptr().cast();
        msg.msg_iovlen = parts.len();
        assert_eq!(libc::sendmsg(fd, &msg, 0), 7);
        client.write_all(b"recvmsg").unwrap();
        let (mut c, mut d) = ([0u8; 3], [0u8; 8]);
        let mut into = [IoSliceMut::new(&mut c), IoSliceMut::new(&mut d)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = into.as_mut_ptr().cast();
        msg.msg_iovlen = into.len();
        assert_eq!(libc::recvmsg(fd, &mut msg, 0), 7);
    }
    drop(server);
    let conn_events = kernel.events(10);

    let conn = conn_events.first().map(|(id, _)| *id).unwrap_or_default();
    let expected = [
        Seen::Open { fd },
        data(fd, Direction::Ingress, b"GET /read"),
        data(fd, Direction::Egress, b"HTTP/1.1 200"),
        data(fd, Direction::Ingress, b"readv!"),
        data(fd, Direction::Egress, b"writev"),
        data(fd, Direction::Egress, b"sendto"),
        data(fd, Direction::Ingress, b"recvfrom"),
        data(fd, Direction::Egress, b"sendmsg"),
        data(fd, Direction::Ingress, b"recvmsg"),
        Seen::Close { fd },
    ];
    assert_eq!(
        conn_events.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>()
    );
    assert!(conn_events.iter().all(|(id, _)| *id == conn && conn != 0));
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
    drop(client);
}

/// The first two iovecs of a call are read together (`emit::copy_iov`), the rest one
/// by one: empty ones, one alone, and more than two must all come out whole and in order.
#[test]
fn a_writev_copies_every_iovec_whether_read_together_or_alone() {
    let mut kernel = Kernel::load();
    let (_client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    let parts = [
        IoSlice::new(b"HTTP/1.1 "),
        IoSlice::new(b""),
        IoSlice::new(b"200 OK\r\n"),
        IoSlice::new(b"\r\n"),
    ];
    assert_eq!(server.write_vectored(&parts).unwrap(), 19);
    assert_eq!(server.write_vectored(&[IoSlice::new(b"alone")]).unwrap(), 5);
    let written = server
        .write_vectored(&[IoSlice::new(b""), IoSlice::new(b"second")])
        .unwrap();
    assert_eq!(written, 6);
    let events = kernel.events(4);
    let expected = [
        Seen::Open { fd },
        data(fd, Direction::Egress, b"HTTP/1.1 200 OK\r\n\r\n"),
        data(fd, Direction::Egress, b"alone"),
        data(fd, Direction::Egress, b"second"),
    ];
    assert_eq!(
        events.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>()
    );
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

#[test]
fn a_descriptor_reused_without_close_ends_the_old_connection() {
    let mut kernel = Kernel::load();
    let (mut first_client, mut first) = kernel.connection();
    let (mut second_client, second) = kernel.connection();
    let fd = first.as_raw_fd();
    let mut buf = [0u8; 16];

    first_client.write_all(b"one").unwrap();
    assert_eq!(first.read(&mut buf).unwrap(), 3);
    // The second connection takes over the first one's descriptor number, with no
    // close() the kernel programs would see.
    // SAFETY: both descriptors are open and owned by this test.
    assert_eq!(unsafe { libc::dup2(second.as_raw_fd(), fd) }, fd);
    second_client.write_all(b"two").unwrap();
    assert_eq!(first.read(&mut buf).unwrap(), 3);
    let seen = kernel.events(5);

    let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        [
            &Seen::Open { fd },
            &data(fd, Direction::Ingress, b"one"),
            &Seen::Close { fd },
            &Seen::Open { fd },
            &data(fd, Direction::Ingress, b"two"),
        ]
    );
    assert_eq!(ids[0], ids[2], "the close ends the first connection");
    assert_ne!(ids[0], ids[3], "the reused descriptor is a new connection");
    assert_eq!(ids[3], ids[4]);
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

#[test]
fn a_connection_evicted_from_conns_opens_again_at_its_next_syscall() {
    /// Descriptors each helper process touches: below this VM's limit of 20,000 per
    /// process, which root cannot raise here (no CAP_SYS_RESOURCE).
    const PER_PROCESS: i32 = 16_000;
    const MAX_PROCESSES: usize = 32;
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    let mut buf = [0u8; 16];
    client.write_all(b"one").unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 3);

    // A lookup from user space does not mark the entry used, so watching it does not
    // keep it in the LRU.
    let conns: aya::maps::HashMap<_, [u32; 2], [u64; 8]> =
        aya::maps::HashMap::try_from(kernel.loaded.ebpf.map("CONNS").unwrap()).unwrap();
    let key = [std::process::id(), fd as u32];
    assert!(conns.get(&key, 0).is_ok(), "the connection is cached");
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let mut processes = 0;
    // Children of a watched process are watched; each descriptor one writes a byte to
    // gets an entry (a negative one), which outlives the child; calls that move nothing
    // are not looked at. Entries used once are evicted
    // first: the LRU's active list only gives up entries once it outgrows the inactive
    // one, so each descriptor is used twice, as a busy connection's would be.
    while conns.get(&key, 0).is_ok() && processes < MAX_PROCESSES {
        processes += 1;
        // SAFETY: the child only makes async-signal-safe calls (dup, write, _exit) on
        // descriptors it inherited, then exits without unwinding.
        unsafe {
            let child = libc::fork();
            assert!(child >= 0, "fork failed");
            if child == 0 {
                for _ in 0..PER_PROCESS {
                    let copy = libc::dup(null.as_raw_fd());
                    if copy < 0 {
                        break;
                    }
                    libc::write(copy, buf.as_ptr().cast(), 1);
                    libc::write(copy, buf.as_ptr().cast(), 1);
                }
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(child, &mut status, 0), child);
        }
    }
    assert!(
        conns.get(&key, 0).is_err(),
        "{processes} processes with {PER_PROCESS} descriptors each did not evict it"
    );

    client.write_all(b"two").unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 3);
    let seen = kernel.events(4);
    let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        [
            &Seen::Open { fd },
            &data(fd, Direction::Ingress, b"one"),
            &Seen::Open { fd },
            &data(fd, Direction::Ingress, b"two"),
        ]
    );
    // A new id for the same socket: user space tells it is the same TCP connection by
    // its endpoints (connection::Tracker) and counts it as forgotten.
    assert_ne!(ids[0], ids[2]);
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

#[test]
fn a_32_bit_syscall_is_never_read_as_the_64_bit_one_of_its_number() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    let mut buf = [0u8; 16];
    client.write_all(b"one").unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 3);

    // 32-bit getpid is number 20, 64-bit writev's. With the registers a writev of
    // "forged" on the watched socket would have, it returns the pid (> 0), which read
    // as writev's return value would report bytes the process never sent.
    let forged = [IoSlice::new(b"forged")];
    let ret: i64;
    // SAFETY: `int 0x80` with eax = 20 is the 32-bit getpid: it reads no memory and
    // changes rax and, on return to a 64-bit task, r8-r11.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            in("rdi") fd as u64,
            in("rsi") forged.as_ptr() as u64,
            in("rdx") 1u64,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    assert_eq!(ret, i64::from(std::process::id() as i32), "32-bit getpid");
    server.write_all(b"after").unwrap();

    let seen = kernel.events(3);
    assert_eq!(
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        [
            &Seen::Open { fd },
            &data(fd, Direction::Ingress, b"one"),
            &data(fd, Direction::Egress, b"after"),
        ]
    );
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

#[test]
fn peeks_and_error_queue_reads_are_not_captured_and_discarded_bytes_are_counted_not_read() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    // Software timestamps of what the server sends: its error queue then returns each
    // sent packet, headers and payload, to a read with MSG_ERRQUEUE.
    let stamps = libc::SOF_TIMESTAMPING_TX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
    // SAFETY: sets an integer option on a descriptor this test owns.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            (&stamps as *const u32).cast(),
            size_of::<u32>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    server
        .write_all(b"GET /from-the-error-queue HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut sent = [0u8; 38];
    client.read_exact(&mut sent).unwrap();
    client.write_all(b"0123456789abcdefghij").unwrap();
    // What the buffer held before: a discard must not make it a request.
    let mut buf = *b"GET /stale HTTP/1.1\r\n\r\n";
    // SAFETY: plain socket calls on a descriptor this test owns, into a local buffer;
    // IoSliceMut is ABI-compatible with iovec.
    unsafe {
        assert_eq!(
            libc::recv(fd, buf.as_mut_ptr().cast(), 4, libc::MSG_PEEK),
            4
        );
        let mut parts = [IoSliceMut::new(&mut buf[..3])];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = parts.as_mut_ptr().cast();
        msg.msg_iovlen = parts.len();
        assert_eq!(libc::recvmsg(fd, &mut msg, libc::MSG_PEEK), 3);
        assert_eq!(
            libc::recv(fd, buf.as_mut_ptr().cast(), 5, libc::MSG_TRUNC),
            5
        );
        let mut queued = [0u8; 256];
        let mut control = [0u8; 256];
        let mut parts = [IoSliceMut::new(&mut queued)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = parts.as_mut_ptr().cast();
        msg.msg_iovlen = parts.len();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        let looped = libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE);
        assert!(
            looped > 38,
            "the sent packet from the error queue: {looped}"
        );
    }
    let mut rest = [0u8; 15];
    server.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"56789abcdefghij");

    let ingress = |len: u32, copied: usize| Transfer {
        direction: Direction::Ingress,
        len,
        copied,
        body: BodyCopy::Whole,
    };
    let egress = Transfer {
        direction: Direction::Egress,
        len: 38,
        copied: 38,
        body: BodyCopy::Whole,
    };
    assert_eq!(
        kernel.transfers(3),
        [egress, ingress(5, 0), ingress(15, 15)]
    );
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

/// A proxy splices bodies through a pipe: the bytes never pass through its memory. Both
/// directions are counted with nothing copied, and the reads around them are whole.
#[test]
fn spliced_bytes_are_counted_in_their_direction_and_never_copied() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    let mut pipe = [0i32; 2];
    // SAFETY: creates two descriptors this test owns and closes below.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let [pipe_out, pipe_in] = pipe;
    let splice = |from: i32, to: i32, len: usize| {
        // SAFETY: splice between descriptors this test owns, without offsets.
        unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, 0) }
    };
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n0123456789")
        .unwrap();
    let mut head = [0u8; 18];
    server.read_exact(&mut head).unwrap();
    assert_eq!(splice(fd, pipe_in, 10), 10);
    let mut through = [0u8; 10];
    // SAFETY: reads into a local buffer from a pipe this test owns.
    assert_eq!(
        unsafe { libc::read(pipe_out, through.as_mut_ptr().cast(), 10) },
        10
    );
    assert_eq!(&through, b"0123456789");
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    // SAFETY: writes a local buffer into a pipe this test owns.
    assert_eq!(
        unsafe { libc::write(pipe_in, b"spliced".as_ptr().cast(), 7) },
        7
    );
    assert_eq!(splice(pipe_out, fd, 7), 7);
    let mut answer = [0u8; 26];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[19..], b"spliced");
    // SAFETY: closes the pipe's two descriptors, owned by this test.
    unsafe {
        libc::close(pipe_in);
        libc::close(pipe_out);
    }

    assert_eq!(
        kernel.transfers(4),
        [
            whole(Direction::Ingress, 18, 18),
            whole(Direction::Ingress, 10, 0),
            whole(Direction::Egress, 19, 19),
            whole(Direction::Egress, 7, 0),
        ]
    );
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

/// A descriptor dup'd from a connection's is a connection of its own to the kernel (its
/// own id and counters), but names the same socket, as fstat does, so user space joins
/// the two.
#[test]
fn a_duplicated_descriptor_opens_with_the_socket_number_of_the_original() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    // SAFETY: duplicates a descriptor this test owns; closed below.
    let copy = unsafe { libc::dup(fd) };
    assert!(copy > fd);
    client.write_all(b"GET /").unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).unwrap();
    // SAFETY: writes a local buffer to the duplicate, then closes it.
    unsafe {
        assert_eq!(libc::write(copy, b"HTTP/".as_ptr().cast(), 5), 5);
        libc::close(copy);
    }
    let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let opens = kernel.collect(2, |event| match event {
        ConnectionEvent::Open { header, socket, .. } => Some((header, (header.fd, socket))),
        _ => None,
    });
    let opens: Vec<(i32, u64)> = opens.into_iter().map(|(_, open)| open).collect();
    assert_eq!(opens, [(fd, inode), (copy, inode)]);
    drop(client);
}

/// `iovecs` as the messages of one recvmmsg or sendmmsg call, one iovec each.
fn messages(iovecs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: a plain C struct, all zeroes valid.
            let mut message: libc::mmsghdr = unsafe { std::mem::zeroed() };
            message.msg_hdr.msg_iov = iov;
            message.msg_hdr.msg_iovlen = 1;
            message
        })
        .collect()
}

/// An iovec the kernel fills.
fn into(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }
}

/// An iovec the kernel only reads (iovec has no const form).
fn from(buf: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    }
}

/// preadv2 at the current position and pwritev2 are readv and writev with flags; a
/// recvmmsg or sendmmsg that moves one message is a recvmsg or sendmsg of it. Each is
/// copied whole, and a preadv2 at an offset (which a socket refuses) is nothing.
#[test]
fn vectored_calls_with_flags_and_single_message_calls_yield_their_bytes() {
    let mut kernel = Kernel::load();
    let (mut client, server) = kernel.connection();
    let fd = server.as_raw_fd();
    let (mut a, mut b) = ([0u8; 3], [0u8; 8]);
    let mut parts = [into(&mut a), into(&mut b)];
    let mut one = [0u8; 16];
    let mut answer = [0u8; 3];
    // SAFETY: plain socket calls on a descriptor this test owns; every iovec and
    // message points into a local buffer that outlives the call.
    unsafe {
        client.write_all(b"preadv2").unwrap();
        assert_eq!(libc::preadv2(fd, parts.as_mut_ptr(), 2, 5, 0), -1);
        assert_eq!(*libc::__errno_location(), libc::ESPIPE);
        assert_eq!(libc::preadv2(fd, parts.as_mut_ptr(), 2, -1, 0), 7);
        let written = [from(b"pwrite"), from(b"v2")];
        assert_eq!(libc::pwritev2(fd, written.as_ptr(), 2, -1, 0), 8);
        client.write_all(b"recvmmsg").unwrap();
        let mut iovecs = [into(&mut one)];
        let mut received = messages(&mut iovecs);
        let n = libc::recvmmsg(fd, received.as_mut_ptr(), 1, 0, std::ptr::null_mut());
        assert_eq!((n, received[0].msg_len), (1, 8));
        let mut iovecs = [from(b"one")];
        let mut sent = messages(&mut iovecs);
        assert_eq!(libc::sendmmsg(fd, sent.as_mut_ptr(), 1, 0), 1);
    }
    let mut pwritten = [0u8; 8];
    client.read_exact(&mut pwritten).unwrap();
    client.read_exact(&mut answer).unwrap();
    assert_eq!((&pwritten, &answer), (b"pwritev2", b"one"));
    assert_eq!((&a, &one[..8]), (b"pre", &b"recvmmsg"[..]));
    assert_eq!(
        kernel
            .events(5)
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>(),
        [
            Seen::Open { fd },
            data(fd, Direction::Ingress, b"preadv2"),
            data(fd, Direction::Egress, b"pwritev2"),
            data(fd, Direction::Ingress, b"recvmmsg"),
            data(fd, Direction::Egress, b"one"),
        ]
    );
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

/// A recvmmsg or sendmmsg that moves several messages is counted whole: its first
/// message is copied, the rest reaches user space as a gap, never as bytes it did not
/// see, and the reads after it are whole.
#[test]
fn a_multi_message_call_is_counted_whole_with_its_first_message_copied() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let fd = server.as_raw_fd();
    let (mut first, mut second) = ([0u8; 5], [0u8; 5]);
    let mut rest = [0u8; 9];
    // SAFETY: plain socket calls on a descriptor this test owns; every iovec and
    // message points into a local buffer that outlives the call.
    unsafe {
        client.write_all(b"GET /two HTTP/1.1\r\n").unwrap();
        let mut iovecs = [into(&mut first), into(&mut second)];
        let mut received = messages(&mut iovecs);
        let n = libc::recvmmsg(
            fd,
            received.as_mut_ptr(),
            2,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        );
        assert_eq!(n, 2);
        let mut iovecs = [from(b"HTTP/1.1 "), from(b"200 OK\r\n\r\n")];
        let mut sent = messages(&mut iovecs);
        assert_eq!(libc::sendmmsg(fd, sent.as_mut_ptr(), 2, 0), 2);
    }
    assert_eq!((&first, &second), (b"GET /", b"two H"));
    server.read_exact(&mut rest).unwrap();
    assert_eq!(&rest, b"TTP/1.1\r\n");
    assert_eq!(
        kernel.transfers(3),
        [
            whole(Direction::Ingress, 10, 5),
            whole(Direction::Egress, 19, 9),
            whole(Direction::Ingress, 9, 9),
        ]
    );
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

/// A data event of `len` bytes moved, `copied` of them copied, no body window involved.
fn whole(direction: Direction, len: u32, copied: usize) -> Transfer {
    Transfer {
        direction,
        len,
        copied,
        body: BodyCopy::Whole,
    }
}
