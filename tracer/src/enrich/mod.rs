//! Enrichment of HTTP exchanges: which process served them, when (wall clock), and what must
//! not be written (credentials in URLs and command lines, control characters in diagnostics).
pub mod clock;
pub mod path;
pub mod path_rule;
pub mod percent;
pub mod process;
pub mod query;
pub mod secret_name;

pub use clock::Clock;
pub use path::PathRedactor;
pub use path_rule::PathRule;
pub use process::{ProcessCache, ProcessInfo};
pub use query::QueryRedactor;
