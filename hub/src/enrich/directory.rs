//! The identity directory: who a `user.id` is. CSV with a header
//! (`user.id,full_name,email,department,status`) or a JSON array of objects with those
//! keys; told apart by the first non-blank byte. Status is `active` or `disabled`.
use std::{collections::HashMap, path::Path};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("reading {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("{path} line {line}: {detail}")]
    Line {
        path: String,
        line: usize,
        detail: String,
    },
    #[error("{path}: {detail}")]
    Json { path: String, detail: String },
    #[error("{path}: user.id {user:?}: {detail}")]
    Person {
        path: String,
        user: String,
        detail: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Person {
    #[serde(rename = "user.id")]
    pub id: String,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    pub status: Status,
}

pub struct Directory {
    people: Vec<Person>,
    /// `user.id` and e-mail, lowercased, to the person.
    index: HashMap<String, usize>,
}

impl Directory {
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DirectoryError::Read {
            path: name.clone(),
            detail: e.to_string(),
        })?;
        let people = if text.trim_start().starts_with('[') {
            serde_json::from_str(&text).map_err(|e| DirectoryError::Json {
                path: name.clone(),
                detail: e.to_string(),
            })?
        } else {
            parse_csv(&text, &name)?
        };
        for person in &people {
            let fields = [
                ("user.id", Some(&person.id)),
                ("full_name", person.full_name.as_ref()),
                ("email", person.email.as_ref()),
                ("department", person.department.as_ref()),
            ];
            if let Some(why) = fields
                .into_iter()
                .find_map(|(what, value)| value.and_then(|v| super::unstorable(what, v)))
            {
                return Err(DirectoryError::Person {
                    path: name,
                    user: person.id.chars().take(64).collect(),
                    detail: why,
                });
            }
        }
        let mut index = HashMap::new();
        for (n, person) in people.iter().enumerate() {
            index.insert(person.id.to_lowercase(), n);
            if let Some(email) = &person.email {
                index.entry(email.to_lowercase()).or_insert(n);
            }
        }
        Ok(Self { people, index })
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// By `user.id`, else by e-mail (a proxy or an IdP may give either).
    pub fn find(&self, user: &str) -> Option<&Person> {
        self.index
            .get(&user.to_lowercase())
            .map(|&n| &self.people[n])
    }
}

const COLUMNS: [&str; 5] = ["user.id", "full_name", "email", "department", "status"];

fn parse_csv(text: &str, name: &str) -> Result<Vec<Person>, DirectoryError> {
    let bad = |line: usize, detail: String| DirectoryError::Line {
        path: name.to_owned(),
        line,
        detail,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header = fields(header).map_err(|e| bad(1, e))?;
    let position = |column: &str| header.iter().position(|h| h.trim() == column);
    let at: Vec<Option<usize>> = COLUMNS.iter().map(|c| position(c)).collect();
    if at[0].is_none() || at[4].is_none() {
        return Err(bad(
            1,
            format!("the header needs the columns {}", COLUMNS.join(",")),
        ));
    }
    let mut people = Vec::new();
    for (n, line) in lines {
        let cells = fields(line).map_err(|e| bad(n + 1, e))?;
        let cell = |i: usize| {
            at[i]
                .and_then(|at| cells.get(at))
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
        };
        let id = cell(0).ok_or_else(|| bad(n + 1, "no user.id".to_owned()))?;
        let status = match cell(4).as_deref() {
            Some("active") => Status::Active,
            Some("disabled") => Status::Disabled,
            other => return Err(bad(n + 1, format!("status {other:?}: active or disabled"))),
        };
        people.push(Person {
            id,
            full_name: cell(1),
            email: cell(2),
            department: cell(3),
            status,
        });
    }
    Ok(people)
}

/// One CSV line's fields (RFC 4180 quotes; no newlines inside fields).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) if field.is_empty() => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quote".to_owned());
    }
    out.push(field);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_give_the_same_people_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("people.csv");
        std::fs::write(
            &csv,
            "user.id,full_name,email,department,status\nalice,\"Liddell, Alice\",alice@example.com,HR,active\nbob,Bob Builder,,Ops,disabled\n",
        )
        .unwrap();
        let json = dir.path().join("people.json");
        std::fs::write(
            &json,
            r#"[{"user.id":"alice","full_name":"Liddell, Alice","email":"alice@example.com","department":"HR","status":"active"},{"user.id":"bob","full_name":"Bob Builder","department":"Ops","status":"disabled"}]"#,
        )
        .unwrap();
        for path in [&csv, &json] {
            let d = Directory::load(path).unwrap();
            assert_eq!(
                d.find("ALICE").unwrap().full_name.as_deref(),
                Some("Liddell, Alice")
            );
            assert_eq!(d.find("alice@example.com").unwrap().id, "alice");
            assert_eq!(d.find("bob").unwrap().status, Status::Disabled);
            assert!(d.find("carol").is_none());
        }
        std::fs::write(
            &csv,
            "user.id,full_name,email,department,status\ncarol,C,,,retired\n",
        )
        .unwrap();
        let e = Directory::load(&csv).err().unwrap().to_string();
        assert!(e.contains("line 2") && e.contains("retired"), "{e}");
        let long = "y".repeat(300);
        std::fs::write(
            &csv,
            format!("user.id,full_name,email,department,status\ncarol,{long},,,active\n"),
        )
        .unwrap();
        let e = Directory::load(&csv).err().unwrap().to_string();
        assert!(
            e.contains("\"carol\": full_name is longer than 256 bytes"),
            "{e}"
        );
        std::fs::write(
            &json,
            r#"[{"user.id":"dan\u0000","department":"Ops","status":"active"}]"#,
        )
        .unwrap();
        let e = Directory::load(&json).err().unwrap().to_string();
        assert!(e.contains("user.id holds a NUL"), "{e}");
    }
}
