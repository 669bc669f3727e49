//! The JetStream stream the records go to: looked up at every connection, created when
//! missing if that is allowed, and checked to take this host's subject.
use std::time::Duration;

use async_nats::jetstream::{
    self, ErrorCode,
    context::GetStreamErrorKind,
    stream::{Config, StorageType},
};

use super::settings::{StreamName, subject_matches};

pub struct StreamSpec {
    pub name: StreamName,
    /// This host's subject.
    pub subject: String,
    /// The subjects of a stream the tracer creates (every host's).
    pub filter: String,
    pub create: bool,
    pub duplicate_window: Duration,
}

impl StreamSpec {
    /// Makes sure the stream exists and takes `subject`; the error says what is wrong.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<(), String> {
        let name = self.name.as_str();
        match js.get_stream(name).await {
            Ok(stream) => {
                let subjects = &stream.cached_info().config.subjects;
                if subjects.iter().any(|p| subject_matches(p, &self.subject)) {
                    Ok(())
                } else {
                    Err(format!(
                        "stream {name} does not take subject {} (its subjects: {})",
                        self.subject,
                        subjects.join(", ")
                    ))
                }
            }
            Err(e) if is_not_found(e.kind()) => {
                if !self.create {
                    return Err(format!(
                        "stream {name} does not exist and creating it is not allowed \
                         (--nats-create-stream or nats.create_stream = true)"
                    ));
                }
                js.create_stream(Config {
                    name: name.to_owned(),
                    subjects: vec![self.filter.clone()],
                    storage: StorageType::File,
                    duplicate_window: self.duplicate_window,
                    ..Config::default()
                })
                .await
                .map_err(|e| format!("creating stream {name}: {e}"))?;
                eprintln!(
                    "tracer: nats: created stream {name} (subjects {}, file storage, \
                     duplicate window {} s)",
                    self.filter,
                    self.duplicate_window.as_secs()
                );
                Ok(())
            }
            Err(e) => Err(format!("looking up stream {name}: {e}")),
        }
    }
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}
