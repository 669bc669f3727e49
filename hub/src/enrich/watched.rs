//! A file the hub reads and reloads when it changes on disk (size or modification
//! time). A reload that fails keeps the previous version and says why.
use std::{
    fmt::Display,
    path::{Path, PathBuf},
    time::SystemTime,
};

pub struct Watched<T> {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    pub value: T,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl<T> Watched<T> {
    pub fn load<E>(path: &Path, load: impl Fn(&Path) -> Result<T, E>) -> Result<Self, E> {
        let stamp = stamp(path);
        Ok(Self {
            path: path.to_owned(),
            stamp,
            value: load(path)?,
        })
    }

    /// Reloads the file if it changed; a message for the log when it did.
    pub fn refresh<E: Display>(
        &mut self,
        what: &str,
        load: impl Fn(&Path) -> Result<T, E>,
        describe: impl Fn(&T) -> String,
    ) -> Option<String> {
        let now = stamp(&self.path);
        if now == self.stamp {
            return None;
        }
        self.stamp = now;
        Some(match load(&self.path) {
            Ok(value) => {
                self.value = value;
                format!(
                    "{what} {} reloaded: {}",
                    self.path.display(),
                    describe(&self.value)
                )
            }
            Err(e) => format!(
                "{what} {}: {e}; keeping the previous version",
                self.path.display()
            ),
        })
    }
}
