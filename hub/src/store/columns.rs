//! The enrichment as the store's columns and as the JSON object kept beside the line.
use serde_json::{Map, Value};

use crate::enrich::Enrichment;

#[derive(Default)]
pub struct Columns<'a> {
    pub asset: Option<&'a str>,
    pub sensitivity: Option<&'a str>,
    pub country: Option<&'a str>,
    pub asn: Option<i64>,
    pub as_org: Option<&'a str>,
    pub full_name: Option<&'a str>,
    pub department: Option<&'a str>,
    pub user_status: Option<&'a str>,
}

pub fn columns(_e: &Enrichment) -> Columns<'_> {
    Columns::default()
}

/// The keys the hub adds, as one JSON object.
pub fn added_fields(e: &Enrichment) -> String {
    let mut map = Map::new();
    map.insert("url.template".to_owned(), Value::from(e.template.as_str()));
    Value::Object(map).to_string()
}
