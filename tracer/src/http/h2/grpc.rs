//! gRPC over an HTTP/2 stream: service and method from `:path`, status from trailers.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grpc {
    pub service: String,
    pub method: String,
    /// `grpc-status` of the trailers; None when the stream ended without them.
    pub status: Option<u32>,
}

impl Grpc {
    /// gRPC when the content type is `application/grpc` (or `application/grpc+proto` etc.)
    /// and the path is `/package.Service/Method`.
    pub fn from_request(path: &[u8], content_type: &[u8], status: Option<u32>) -> Option<Self> {
        let ct = content_type.to_ascii_lowercase();
        if !(ct == b"application/grpc"
            || ct.starts_with(b"application/grpc+")
            || ct.starts_with(b"application/grpc;"))
        {
            return None;
        }
        let path = std::str::from_utf8(path).ok()?.strip_prefix('/')?;
        let (service, method) = path.split_once('/')?;
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        Some(Self {
            service: service.to_owned(),
            method: method.to_owned(),
            status,
        })
    }
}

/// `grpc-status` is a decimal integer.
pub fn parse_status(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_and_method_come_from_the_path_of_grpc_requests_only() {
        let g = Grpc::from_request(
            b"/helloworld.Greeter/SayHello",
            b"application/grpc",
            Some(0),
        );
        assert_eq!(
            g,
            Some(Grpc {
                service: "helloworld.Greeter".into(),
                method: "SayHello".into(),
                status: Some(0),
            })
        );
        assert!(Grpc::from_request(b"/a.B/C", b"application/grpc+proto", None).is_some());
        assert_eq!(
            Grpc::from_request(b"/a.B/C", b"application/json", None),
            None
        );
        assert_eq!(Grpc::from_request(b"/a.B", b"application/grpc", None), None);
        assert_eq!(
            Grpc::from_request(b"/a.B/C/D", b"application/grpc", None),
            None
        );
        assert_eq!(parse_status(b"14"), Some(14));
        assert_eq!(parse_status(b"x"), None);
    }
}
