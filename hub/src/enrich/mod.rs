//! Central enrichment of access records: `url.template` for every record, and, from
//! files the operator provides, the asset catalog, GeoIP and the identity directory.
//! Every file is reloaded when it changes on disk ([`Enricher::refresh`]).
mod catalog;
mod directory;
mod geoip;
mod template;
mod watched;

use std::{net::IpAddr, path::PathBuf};

use serde_json::{Value, json};

#[cfg(test)]
pub use self::template::template as template_of;
pub use self::{
    catalog::{Asset, Sensitivity},
    directory::{Person, Status},
    geoip::{Geo, Network},
};
use self::{
    catalog::{Catalog, CatalogError},
    directory::{Directory, DirectoryError},
    geoip::{GeoDb, GeoError},
    watched::Watched,
};

/// The most bytes a name from the operator's files (an asset's, a person's) may hold.
/// It is stored in typed columns that are index keys, where PostgreSQL holds at most
/// 2,704 bytes an entry and no NUL: a name past either would fail every batch with a
/// record it enriches, so the file is refused when it is read instead.
const MAX_NAME_BYTES: usize = 256;

/// Why `value`, the `what` of an entry in an operator's file, cannot be stored.
fn unstorable(what: &str, value: &str) -> Option<String> {
    if value.len() > MAX_NAME_BYTES {
        Some(format!("{what} is longer than {MAX_NAME_BYTES} bytes"))
    } else if value.contains('\0') {
        Some(format!("{what} holds a NUL"))
    } else {
        None
    }
}

/// Where the enrichment files are; any of them may be absent.
#[derive(Clone, Debug, Default)]
pub struct EnrichSettings {
    pub catalog: Option<PathBuf>,
    pub geoip: Vec<PathBuf>,
    pub directory: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("asset catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("directory: {0}")]
    Directory(#[from] DirectoryError),
    #[error("GeoIP: {0}")]
    Geo(#[from] GeoError),
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

/// Where the client is.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub network: Network,
    pub geo: Geo,
}

/// What enrichment adds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Enrichment {
    pub template: String,
    pub asset: Option<Asset>,
    pub place: Option<Place>,
    pub person: Option<Person>,
}

impl Enrichment {
    /// The record keys the hub adds, with their values.
    pub fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut fields = vec![("url.template", json!(self.template))];
        if let Some(asset) = &self.asset {
            fields.push(("asset.name", json!(asset.name)));
            if let Some(dataset) = &asset.dataset {
                fields.push(("asset.dataset", json!(dataset)));
            }
            if let Some(owner) = &asset.owner {
                fields.push(("asset.owner", json!(owner)));
            }
            fields.push(("asset.sensitivity", json!(asset.sensitivity.as_str())));
            fields.push(("asset.allowed_roles", json!(asset.allowed_roles)));
            if !asset.allowed_users.is_empty() {
                fields.push(("asset.allowed_users", json!(asset.allowed_users)));
            }
        }
        if let Some(place) = &self.place {
            fields.push(("client.geo.network", json!(place.network.as_str())));
            let geo = &place.geo;
            if let Some(country) = &geo.country {
                fields.push(("client.geo.country_iso_code", json!(country)));
            }
            if let Some(city) = &geo.city {
                fields.push(("client.geo.city_name", json!(city)));
            }
            if let Some((lat, lon)) = geo.location {
                fields.push(("client.geo.location", json!({ "lat": lat, "lon": lon })));
            }
            if let Some(asn) = geo.asn {
                fields.push(("client.as.number", json!(asn)));
            }
            if let Some(org) = &geo.as_org {
                fields.push(("client.as.organization.name", json!(org)));
            }
        }
        if let Some(person) = &self.person {
            if let Some(name) = &person.full_name {
                fields.push(("user.full_name", json!(name)));
            }
            if let Some(email) = &person.email {
                fields.push(("user.email", json!(email)));
            }
            if let Some(department) = &person.department {
                fields.push(("user.department", json!(department)));
            }
            fields.push(("user.status", json!(person.status.as_str())));
        }
        fields
    }
}

pub struct Enricher {
    catalog: Option<Watched<Catalog>>,
    geoip: Vec<Watched<GeoDb>>,
    directory: Option<Watched<Directory>>,
}

impl Enricher {
    /// Loads every file; a file that cannot be read or parsed is an error here (on a
    /// later reload it only keeps the previous version).
    pub fn load(settings: &EnrichSettings) -> Result<Self, EnrichError> {
        Ok(Self {
            catalog: settings
                .catalog
                .as_deref()
                .map(|p| Watched::load(p, Catalog::load))
                .transpose()?,
            geoip: settings
                .geoip
                .iter()
                .map(|p| Watched::load(p, GeoDb::load))
                .collect::<Result<_, _>>()?,
            directory: settings
                .directory
                .as_deref()
                .map(|p| Watched::load(p, Directory::load))
                .transpose()?,
        })
    }

    /// Reloads the files that changed; one message per file reloaded or refused.
    pub fn refresh(&mut self) -> Vec<String> {
        let mut messages = Vec::new();
        if let Some(catalog) = &mut self.catalog {
            messages.extend(catalog.refresh("asset catalog", Catalog::load, |c| {
                format!("{} rules", c.len())
            }));
        }
        for db in &mut self.geoip {
            messages.extend(db.refresh("GeoIP database", GeoDb::load, GeoDb::describe));
        }
        if let Some(directory) = &mut self.directory {
            messages.extend(directory.refresh("directory", Directory::load, |d| {
                format!("{} people", d.len())
            }));
        }
        messages
    }

    pub fn enrich(&self, request: &RequestView<'_>) -> Enrichment {
        let path = request.path.unwrap_or("");
        let asset = self
            .catalog
            .as_ref()
            .and_then(|c| c.value.find(request.host, request.method, path).cloned());
        let place = request.client.map(|ip| {
            let network = Network::of(ip);
            let mut geo = Geo::default();
            if network == Network::Public {
                for db in &self.geoip {
                    db.value.fill(ip, &mut geo);
                }
            }
            Place { network, geo }
        });
        let person = request
            .user
            .and_then(|user| self.directory.as_ref()?.value.find(user).cloned());
        Enrichment {
            template: template::template(path),
            asset,
            place,
            person,
        }
    }
}
