//! Uploads: the kernel reads a request head where it knows a request starts, and counts
//! the body that head announces without copying it.
use std::{
    io::{Read, Write},
    net::TcpStream,
};

use tracer_common::{Direction, head_scan::MIN_SKIP};

use super::{Kernel, Transfer};
use crate::kernel::events::BodyCopy;

const BODY: usize = 20_000;

fn upload(path: &str) -> Vec<u8> {
    let mut bytes =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    bytes.extend(std::iter::repeat_n(b'a', BODY));
    bytes
}

/// Reads exactly `sizes` bytes in turn, one read() each, as a server reads a body it
/// knows the length of (nginx reads at most what is left of it).
fn read_in(server: &mut TcpStream, sizes: &[usize]) {
    let mut buf = vec![0u8; sizes.iter().copied().max().unwrap_or(0)];
    for &size in sizes {
        server.read_exact(&mut buf[..size]).unwrap();
    }
}

fn transfer(len: usize, copied: usize, body: BodyCopy) -> Transfer {
    Transfer {
        direction: Direction::Ingress,
        len: len as u32,
        copied,
        body,
    }
}

#[test]
fn an_upload_body_is_counted_not_copied_while_the_kernel_knows_where_requests_start() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    let first = upload("/one");
    let head = first.len() - BODY;
    // The head and the start of its body in one read, then the body in 4 KiB reads, the
    // last ending where the body does.
    let mut sizes = vec![1024];
    let mut left = first.len() - 1024;
    while left > 0 {
        sizes.push(left.min(4096));
        left -= left.min(4096);
    }
    client.write_all(&first).unwrap();
    read_in(&mut server, &sizes);
    // The next upload starts where the kernel knows: its head opens a window too. Read
    // in two, the second read ending past its body (a pipelined request after it): from
    // there on the kernel no longer knows where requests start.
    let mut second = upload("/two");
    second.extend_from_slice(&upload("/three"));
    client.write_all(&second).unwrap();
    read_in(&mut server, &[1024, second.len() - 1024]);
    // A third upload: copied as always.
    let third = upload("/four");
    client.write_all(&third).unwrap();
    read_in(&mut server, &[1024, third.len() - 1024]);

    let mut want = vec![transfer(1024, head, BodyCopy::HeadOnly)];
    for &size in &sizes[1..] {
        if size as u64 >= MIN_SKIP {
            want.push(transfer(size, 0, BodyCopy::Skipped));
        } else {
            want.push(transfer(size, size, BodyCopy::Whole));
        }
    }
    let rest = second.len() - 1024;
    want.push(transfer(1024, head, BodyCopy::HeadOnly));
    want.push(transfer(
        rest,
        rest.min(tracer_common::MAX_CAPTURE),
        BodyCopy::Whole,
    ));
    want.push(transfer(1024, 1024, BodyCopy::Whole));
    let rest = third.len() - 1024;
    want.push(transfer(rest, rest, BodyCopy::Whole));
    assert_eq!(kernel.transfers(want.len()), want);
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}

#[test]
fn a_request_head_inside_another_body_opens_no_window() {
    let mut kernel = Kernel::load();
    let (mut client, mut server) = kernel.connection();
    // A chunked upload whose chunk data, read on its own, looks like an upload head.
    let outer = b"POST /outer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let inner = upload("/hidden");
    client.write_all(outer).unwrap();
    read_in(&mut server, &[outer.len()]);
    client
        .write_all(format!("{:x}\r\n", inner.len()).as_bytes())
        .unwrap();
    let size_line = format!("{:x}\r\n", inner.len()).len();
    read_in(&mut server, &[size_line]);
    client.write_all(&inner).unwrap();
    read_in(&mut server, &[1024, 4096, 4096]);
    let want = vec![
        transfer(outer.len(), outer.len(), BodyCopy::Whole),
        transfer(size_line, size_line, BodyCopy::Whole),
        transfer(1024, 1024, BodyCopy::Whole),
        transfer(4096, 4096, BodyCopy::Whole),
        transfer(4096, 4096, BodyCopy::Whole),
    ];
    assert_eq!(kernel.transfers(want.len()), want);
    assert_eq!(kernel.losses().total(), 0, "{:?}", kernel.losses());
}
