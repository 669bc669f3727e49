//! GeoIP from MaxMind-format databases (DB-IP Lite or GeoLite2, City and ASN; several
//! files may be given and each answers what it holds). Addresses that are not public
//! are classified without a lookup.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use maxminddb::Reader;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct GeoError {
    path: String,
    detail: String,
}

/// What kind of address it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Public,
    Private,
    Loopback,
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedAddressSpace,
    Other,
}

impl Network {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => v4_class(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4_class(v4),
                None => v6_class(v6),
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Public => "public",
            Network::Private => "private",
            Network::Loopback => "loopback",
            Network::LinkLocal => "link_local",
            Network::SharedAddressSpace => "shared",
            Network::Other => "other",
        }
    }
}

fn v4_class(ip: Ipv4Addr) -> Network {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Network::Loopback
    } else if ip.is_private() {
        Network::Private
    } else if ip.is_link_local() {
        Network::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        Network::SharedAddressSpace
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 || a >= 240 {
        Network::Other
    } else {
        Network::Public
    }
}

fn v6_class(ip: Ipv6Addr) -> Network {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Network::Loopback
    } else if first & 0xfe00 == 0xfc00 {
        Network::Private
    } else if first & 0xffc0 == 0xfe80 {
        Network::LinkLocal
    } else if ip.is_unspecified() || ip.is_multicast() {
        Network::Other
    } else {
        Network::Public
    }
}

/// What the databases say about one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Geo {
    pub country: Option<String>,
    pub city: Option<String>,
    pub location: Option<(f64, f64)>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

/// The keys of City and ASN databases this reads; both shapes in one.
#[derive(Deserialize)]
struct Entry {
    country: Option<Country>,
    city: Option<Names>,
    location: Option<Location>,
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}

#[derive(Deserialize)]
struct Country {
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct Names {
    names: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

impl GeoDb {
    pub fn load(path: &Path) -> Result<Self, GeoError> {
        let reader = Reader::open_readfile(path).map_err(|e| GeoError {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(Self { reader })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({} nodes)",
            self.reader.metadata.database_type, self.reader.metadata.node_count
        )
    }

    /// Adds what this database knows about `ip` to `geo`.
    pub fn fill(&self, ip: IpAddr, geo: &mut Geo) {
        let Ok(Some(entry)) = self.reader.lookup::<Entry>(ip) else {
            return;
        };
        if let Some(code) = entry.country.and_then(|c| c.iso_code) {
            geo.country.get_or_insert(code);
        }
        if let Some(name) = entry
            .city
            .and_then(|c| c.names)
            .and_then(|mut n| n.remove("en"))
        {
            geo.city.get_or_insert(name);
        }
        if let Some(Location {
            latitude: Some(lat),
            longitude: Some(lon),
        }) = entry.location
        {
            geo.location.get_or_insert((lat, lon));
        }
        if let Some(asn) = entry.autonomous_system_number {
            geo.asn.get_or_insert(asn);
        }
        if let Some(org) = entry.autonomous_system_organization {
            geo.as_org.get_or_insert(org);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The City and ASN test databases, written by MaxMind's own writer.
    pub fn test_databases(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/make-test-mmdb.pl");
        let status = std::process::Command::new("perl")
            .arg(script)
            .arg(dir)
            .status()
            .expect("running perl (scripts/setup.sh installs libmaxmind-db-writer-perl)");
        assert!(
            status.success(),
            "{script} failed: is libmaxmind-db-writer-perl installed?"
        );
        (dir.join("test-city.mmdb"), dir.join("test-asn.mmdb"))
    }

    #[test]
    fn city_and_asn_databases_each_answer_what_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (city, asn) = test_databases(dir.path());
        let dbs = [GeoDb::load(&city).unwrap(), GeoDb::load(&asn).unwrap()];
        let mut geo = Geo::default();
        for db in &dbs {
            db.fill("203.0.113.9".parse().unwrap(), &mut geo);
        }
        assert_eq!(
            geo,
            Geo {
                country: Some("BR".into()),
                city: Some("São Paulo".into()),
                location: Some((-23.55, -46.63)),
                asn: Some(64500),
                as_org: Some("Example Transit".into()),
            }
        );
        let mut none = Geo::default();
        dbs[0].fill("192.0.2.1".parse().unwrap(), &mut none);
        assert_eq!(none, Geo::default());
        assert!(GeoDb::load(&dir.path().join("missing.mmdb")).is_err());
        assert!(dbs[0].describe().contains("City"));
    }

    #[test]
    fn addresses_are_classified_without_a_database() {
        let class = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(class("127.0.0.1"), Network::Loopback);
        assert_eq!(class("10.1.2.3"), Network::Private);
        assert_eq!(class("192.168.1.1"), Network::Private);
        assert_eq!(class("100.64.0.1"), Network::SharedAddressSpace);
        assert_eq!(class("169.254.0.1"), Network::LinkLocal);
        assert_eq!(class("203.0.113.9"), Network::Public);
        assert_eq!(class("::1"), Network::Loopback);
        assert_eq!(class("fd00::1"), Network::Private);
        assert_eq!(class("fe80::1"), Network::LinkLocal);
        assert_eq!(class("::ffff:10.0.0.1"), Network::Private);
        assert_eq!(class("2001:db8::1"), Network::Public);
    }
}
