//! HTTP/2 on a watched port: frames, HPACK and streams, into the same exchanges HTTP/1
//! yields, so identity, redaction and records treat both alike.

mod conn;
mod fields;
mod frame;
mod grpc;
mod hpack;
mod huffman;
mod stream;
#[cfg(test)]
mod tests;

pub use self::conn::H2Connection;
pub use self::grpc::Grpc;
