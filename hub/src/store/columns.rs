//! The enrichment as the store's typed columns and as the JSON object kept beside the
//! original line, and the other values a record's row holds that are worked out rather
//! than copied.
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::enrich::Enrichment;

pub struct Columns<'a> {
    pub asset: Option<&'a str>,
    pub sensitivity: Option<&'static str>,
    pub country: Option<&'a str>,
    pub asn: Option<i64>,
    pub as_org: Option<&'a str>,
    pub full_name: Option<&'a str>,
    pub department: Option<&'a str>,
    pub user_status: Option<&'static str>,
}

pub fn columns(e: &Enrichment) -> Columns<'_> {
    let geo = e.place.as_ref().map(|p| &p.geo);
    Columns {
        asset: e.asset.as_ref().map(|a| a.name.as_str()),
        sensitivity: e.asset.as_ref().map(|a| a.sensitivity.as_str()),
        country: geo.and_then(|g| g.country.as_deref()),
        asn: geo.and_then(|g| g.asn).map(i64::from),
        as_org: geo.and_then(|g| g.as_org.as_deref()),
        full_name: e.person.as_ref().and_then(|p| p.full_name.as_deref()),
        department: e.person.as_ref().and_then(|p| p.department.as_deref()),
        user_status: e.person.as_ref().map(|p| p.status.as_str()),
    }
}

/// The keys the hub adds, as one JSON object.
fn added_fields(e: &Enrichment) -> String {
    let map: Map<String, Value> = e
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Value::Object(map).to_string()
}

/// The values of a record's row that are worked out from its fields and enrichment,
/// not copied: made where the line is parsed, so that the writer's thread, the one
/// ingest waits on, only binds them.
pub struct Derived {
    /// The keys the hub adds ([`added_fields`]).
    pub added: String,
    /// The client's address as text, as rows and rollups hold it.
    pub client: Option<String>,
    pub client_key: Option<[u8; 16]>,
}

impl Derived {
    pub fn of(client: Option<IpAddr>, e: &Enrichment) -> Self {
        Self {
            added: added_fields(e),
            client: client.map(|c| c.to_string()),
            client_key: client.map(client_key),
        }
    }
}

/// An address as 16 bytes (IPv4 mapped into IPv6), so a CIDR is a byte range.
pub fn client_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
