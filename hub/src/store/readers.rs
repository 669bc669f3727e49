//! Reader connections kept between API requests: a PostgreSQL connection costs a TCP
//! and authentication round trip or several, too much to pay per dashboard request.
use std::sync::Mutex;

use super::{Db, StoreAt};

/// Idle readers kept at most; more run at once only while requests overlap.
const MAX_IDLE: usize = 8;

pub struct Readers {
    at: StoreAt,
    idle: Mutex<Vec<Db>>,
}

impl Readers {
    pub fn new(at: StoreAt) -> Self {
        Self {
            at,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `work` on an idle reader, or a new one. A reader whose work failed is
    /// closed, not kept: its connection may be what failed.
    pub fn with<T>(&self, work: impl FnOnce(&mut Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut db = match idle {
            Some(db) => db,
            None => self.at.open_reader()?,
        };
        let result = work(&mut db);
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(db);
            }
        }
        result
    }
}
