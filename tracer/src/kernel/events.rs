//! Decodes ring-buffer records into typed events, borrowing the payload.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use tracer_common::{
    ConnEvent, DATA_BODY_SKIPPED, DATA_HEAD_ONLY, DataEvent, Direction, EventHeader, EventKind,
    MAX_CAPTURE, Syscall,
};

/// Both ends of a TCP connection, as the kernel saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub local: IpAddr,
    pub local_port: u16,
    pub peer: IpAddr,
    pub peer_port: u16,
}

/// A decoded ring-buffer record: something for the connection tracker, or for the
/// pipeline's TLS discovery.
#[derive(Debug)]
pub enum KernelEvent<'a> {
    Connection(ConnectionEvent<'a>),
    /// `header.tgid` started listening on a watched port, or a watched process forked
    /// it (then `header.tgid` is the child's thread id: a thread or a new process).
    Listen {
        header: EventHeader,
    },
    /// `header.tgid` set up an io_uring while watched (`header.fd` is the ring).
    IoUring {
        header: EventHeader,
    },
}

/// How much of a server's read or write the kernel copied, given what it knew of the
/// request or response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyCopy {
    /// Up to `MAX_CAPTURE`, as always.
    Whole,
    /// Nothing: the transfer lay inside a body whose length the head declared.
    Skipped,
    /// Only the head: the rest of the transfer starts its body.
    HeadOnly,
}

/// What happened to watched connections.
#[derive(Debug)]
pub enum ConnectionEvent<'a> {
    Open {
        header: EventHeader,
        endpoints: Endpoints,
        /// The socket's inode number: descriptors of one socket are one connection.
        socket: u64,
    },
    Data {
        header: EventHeader,
        direction: Direction,
        /// Bytes the syscall transferred; `payload` is a prefix of them.
        len: u32,
        lost_before: u32,
        payload: &'a [u8],
        /// Plaintext from the OpenSSL probes, not bytes of a read or write syscall.
        decrypted: bool,
        /// The kernel copied less than it could because the bytes are response body
        /// whose length a head declared.
        body: BodyCopy,
    },
    Close {
        header: EventHeader,
    },
    /// The process `header.tgid` exited: its connections are over.
    Exit {
        header: EventHeader,
    },
    /// The connection carries TLS: from now on only decrypted bytes (SSL probes) arrive.
    Tls {
        header: EventHeader,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is too short")]
    Short(usize),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("bad data event (direction {direction}, syscall {syscall}, captured {captured})")]
    Data {
        direction: u8,
        syscall: u8,
        captured: u32,
    },
}

pub fn decode(bytes: &[u8]) -> Result<KernelEvent<'_>, DecodeError> {
    let header: EventHeader = read(bytes)?;
    let event = match EventKind::from_u8(header.kind).ok_or(DecodeError::Kind(header.kind))? {
        EventKind::Open => {
            let event: ConnEvent = read(bytes)?;
            ConnectionEvent::Open {
                header,
                endpoints: endpoints(&event)?,
                socket: event.socket,
            }
        }
        EventKind::Close => ConnectionEvent::Close { header },
        EventKind::Exit => ConnectionEvent::Exit { header },
        EventKind::Tls => ConnectionEvent::Tls { header },
        EventKind::Listen => return Ok(KernelEvent::Listen { header }),
        EventKind::IoUring => return Ok(KernelEvent::IoUring { header }),
        EventKind::Data => {
            let event: DataEvent = read(bytes)?;
            let bad = || DecodeError::Data {
                direction: event.direction,
                syscall: event.syscall,
                captured: event.captured,
            };
            let direction = match event.direction {
                0 => Direction::Ingress,
                1 => Direction::Egress,
                _ => return Err(bad()),
            };
            // An unknown syscall means the event is not what it claims to be.
            let syscall = Syscall::from_u8(event.syscall).ok_or_else(bad)?;
            let start = size_of::<DataEvent>();
            let captured = event.captured as usize;
            let body = match event.flags {
                0 => BodyCopy::Whole,
                DATA_BODY_SKIPPED if captured == 0 => BodyCopy::Skipped,
                DATA_HEAD_ONLY => BodyCopy::HeadOnly,
                _ => return Err(bad()),
            };
            if captured > MAX_CAPTURE
                || captured > event.len as usize
                || (body != BodyCopy::Whole && decrypted_call(syscall))
            {
                return Err(bad());
            }
            let payload = bytes.get(start..start + captured).ok_or_else(bad)?;
            ConnectionEvent::Data {
                header,
                direction,
                len: event.len,
                lost_before: event.lost_before,
                payload,
                decrypted: decrypted_call(syscall),
                body,
            }
        }
    };
    Ok(KernelEvent::Connection(event))
}

/// The OpenSSL probes' calls: their plaintext is never skipped (`body` is the syscall
/// path's).
fn decrypted_call(syscall: Syscall) -> bool {
    matches!(syscall, Syscall::SslRead | Syscall::SslWrite)
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; T is a plain #[repr(C)] type from tracer-common.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn endpoints(event: &ConnEvent) -> Result<Endpoints, DecodeError> {
    let addr = |raw: &[u8; 16]| -> Result<IpAddr, DecodeError> {
        match event.family {
            2 => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
            // Dual-stack listeners see IPv4 clients as ::ffff:a.b.c.d; report them as IPv4.
            10 => Ok(Ipv6Addr::from(*raw).to_canonical()),
            other => Err(DecodeError::Family(other)),
        }
    };
    Ok(Endpoints {
        local: addr(&event.local_addr)?,
        local_port: event.local_port,
        peer: addr(&event.peer_addr)?,
        peer_port: event.peer_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u8,
            _pad: [0; 3],
            tgid: 10,
            tid: 11,
            fd: 3,
            conn_id: 7,
            ts_ns: 99,
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain #[repr(C)] value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_data_with_payload() {
        let mut bytes = bytes_of(&DataEvent {
            header: header(EventKind::Data),
            direction: 1,
            syscall: 5,
            flags: 0,
            len: 10,
            captured: 4,
            lost_before: 2,
        });
        bytes.extend_from_slice(b"HTTP");
        let KernelEvent::Connection(ConnectionEvent::Data {
            direction,
            len,
            lost_before,
            payload,
            ..
        }) = decode(&bytes).expect("decodes")
        else {
            panic!("not data");
        };
        assert_eq!(direction, Direction::Egress);
        assert_eq!((len, lost_before, payload), (10, 2, &b"HTTP"[..]));
    }

    #[test]
    fn rejects_payload_longer_than_record() {
        let bytes = bytes_of(&DataEvent {
            header: header(EventKind::Data),
            direction: 0,
            syscall: 0,
            flags: 0,
            len: 10,
            captured: 4,
            lost_before: 0,
        });
        assert!(matches!(decode(&bytes), Err(DecodeError::Data { .. })));
        assert_eq!(decode(&bytes[..3]).unwrap_err(), DecodeError::Short(3));
    }

    #[test]
    fn body_flags_decode_only_on_plaintext_transfers_that_fit_them() {
        let event = |direction: u8, flags: u16, captured: u32| {
            let syscall = if direction < 2 {
                5
            } else {
                Syscall::SslWrite as u8
            };
            let mut bytes = bytes_of(&DataEvent {
                header: header(EventKind::Data),
                direction: direction & 1,
                syscall,
                flags,
                len: 40_000,
                captured,
                lost_before: 0,
            });
            bytes.extend(std::iter::repeat_n(b'x', captured as usize));
            bytes
        };
        let body = |bytes: &[u8]| match decode(bytes) {
            Ok(KernelEvent::Connection(ConnectionEvent::Data { body, .. })) => Some(body),
            _ => None,
        };
        assert_eq!(body(&event(1, 0, 100)), Some(BodyCopy::Whole));
        assert_eq!(
            body(&event(1, DATA_BODY_SKIPPED, 0)),
            Some(BodyCopy::Skipped)
        );
        assert_eq!(
            body(&event(1, DATA_HEAD_ONLY, 200)),
            Some(BodyCopy::HeadOnly)
        );
        // Request bodies too (the syscall number does not say the direction here).
        assert_eq!(
            body(&event(0, DATA_BODY_SKIPPED, 0)),
            Some(BodyCopy::Skipped)
        );
        assert_eq!(
            body(&event(0, DATA_HEAD_ONLY, 200)),
            Some(BodyCopy::HeadOnly)
        );
        // A skipped write that carries bytes, decrypted bytes marked as body (direction
        // 3: an SSL_write), unknown flags.
        assert_eq!(body(&event(1, DATA_BODY_SKIPPED, 10)), None);
        assert_eq!(body(&event(3, DATA_HEAD_ONLY, 200)), None);
        assert_eq!(body(&event(3, 0, 200)), Some(BodyCopy::Whole));
        assert_eq!(body(&event(1, 4, 0)), None);
    }

    #[test]
    fn mapped_ipv6_peer_is_reported_as_ipv4() {
        let mut peer = [0u8; 16];
        peer[10] = 0xff;
        peer[11] = 0xff;
        peer[12..].copy_from_slice(&[10, 0, 0, 1]);
        let bytes = bytes_of(&ConnEvent {
            header: header(EventKind::Open),
            family: 10,
            local_port: 8080,
            peer_port: 40000,
            _pad: 0,
            local_addr: Ipv6Addr::LOCALHOST.octets(),
            peer_addr: peer,
            socket: 1,
        });
        let KernelEvent::Connection(ConnectionEvent::Open { endpoints, .. }) =
            decode(&bytes).expect("decodes")
        else {
            panic!("not open");
        };
        assert_eq!(endpoints.peer, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(endpoints.local, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}
