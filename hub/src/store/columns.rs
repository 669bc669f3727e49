//! The enrichment as the store's typed columns and as the JSON object kept beside the
//! original line.
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
pub fn added_fields(e: &Enrichment) -> String {
    let map: Map<String, Value> = e
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Value::Object(map).to_string()
}
