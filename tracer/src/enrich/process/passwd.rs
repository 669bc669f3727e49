//! Host user names by uid, from passwd.
use std::{
    collections::HashMap,
    fs,
    time::{Duration, Instant},
};

/// The host's passwd even when the tracer runs in a container sharing the host pid namespace;
/// on the host both paths are the same file.
const PASSWD_PATHS: &[&str] = &["/proc/1/root/etc/passwd", "/etc/passwd"];
/// A uid missing from passwd rereads it at most this often (users are added rarely).
const PASSWD_RELOAD_AFTER: Duration = Duration::from_secs(60);

/// Host user names by uid, read from passwd rather than NSS: lookups must not block on a
/// directory service in the event path, and only local accounts run servers here.
#[derive(Default)]
pub(super) struct UserNames {
    by_uid: HashMap<u32, String>,
    loaded_at: Option<Instant>,
}

impl UserNames {
    pub(super) fn lookup(&mut self, uid: u32) -> Option<String> {
        if !self.by_uid.contains_key(&uid) && self.may_reload() {
            self.by_uid = read_passwd();
            self.loaded_at = Some(Instant::now());
        }
        self.by_uid.get(&uid).cloned()
    }

    fn may_reload(&self) -> bool {
        self.loaded_at
            .is_none_or(|loaded_at| loaded_at.elapsed() >= PASSWD_RELOAD_AFTER)
    }
}

fn read_passwd() -> HashMap<u32, String> {
    for path in PASSWD_PATHS {
        match fs::read(path) {
            Ok(bytes) => return parse_passwd(&String::from_utf8_lossy(&bytes)),
            Err(error) => log::debug!("{path}: {error}"),
        }
    }
    HashMap::new()
}

/// `name:password:uid:...` lines; the first name of a uid wins, as with getpwuid.
fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut by_uid = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(uid)) = (fields.next(), fields.nth(1)) else {
            continue;
        };
        if let Ok(uid) = uid.parse() {
            by_uid.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    by_uid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      \n\
                      toor:x:0:0::/root:/bin/sh\n\
                      www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
                      broken:x:notanumber:1::/:/bin/false\n\
                      short\n";
        let users = parse_passwd(passwd);
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(users.len(), 2);
    }
}
