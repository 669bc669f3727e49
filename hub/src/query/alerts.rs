//! Alerts as the CLI and the API show them, and the dashboard's selections of them:
//! filtered pages, counts per rule and severity, and where each delivery target is.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::format;
use crate::{
    store::{
        alerts::{self as store_alerts, Alert, Severity},
        db::{Db, Value as SqlValue, args, dynamic},
    },
    when::format_ns,
};

pub fn json(alert: &Alert) -> Value {
    json!({
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity.as_str(),
        "entity": alert.entity,
        "first_seen": format_ns(alert.first_ns),
        "last_seen": format_ns(alert.last_ns),
        "count": alert.count,
        "summary": alert.summary,
        "resolved": alert.resolved_ns.map(format_ns),
        "raised": alert.raised_ns.map(format_ns),
        "records": alert.records.iter()
            .map(|(stream, seq)| json!({ "stream": stream, "seq": seq }))
            .collect::<Vec<_>>(),
    })
}

/// Alerts as [`json`] writes them, one row each.
pub fn table(alerts: &[Value]) -> String {
    let text = |a: &Value, key: &str| match &a[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                text(a, "id"),
                text(a, "last_seen"),
                text(a, "severity"),
                format::cell(&text(a, "rule"), 40),
                format::cell(&text(a, "entity"), 60),
                text(a, "count"),
                format::cell(&text(a, "summary"), 400),
            ]
        })
        .collect();
    format::table(
        &[
            "id",
            "last seen",
            "severity",
            "rule",
            "entity",
            "count",
            "summary",
        ],
        &rows,
    )
}

/// Which alerts the dashboard's Alerts page lists: those whose span (first to last
/// seen, record time) meets the range, of one rule, at or above a severity, of one
/// entity (exact, or a prefix when it ends in `*`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub rule: Option<String>,
    pub min_severity: Option<Severity>,
    pub entity: Option<String>,
}

/// Severities from the lowest, as counts list them.
pub const SEVERITIES: [Severity; 4] = [
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

fn severity_of(rank: i64) -> Severity {
    SEVERITIES[(rank.clamp(1, 4) - 1) as usize]
}

impl Selection {
    /// The WHERE clause and its parameters (bound, never spliced). `facets` leaves out
    /// the rule and severity, for the counts that let a reader pick one.
    fn sql(&self, facets: bool) -> (String, Vec<SqlValue>) {
        let mut clauses = vec!["TRUE".to_owned()];
        let mut params: Vec<SqlValue> = Vec::new();
        // Each `?` becomes `?N`, numbered across the whole clause list.
        let mut push = |clause: &str, values: Vec<SqlValue>| {
            let mut parts = clause.split('?');
            let mut numbered = parts.next().unwrap_or_default().to_owned();
            for (part, value) in parts.zip(values) {
                params.push(value);
                numbered.push_str(&format!("?{}{part}", params.len()));
            }
            clauses.push(numbered);
        };
        if let Some(from) = self.from_ns {
            push("last_ns >= ?", vec![SqlValue::Integer(from)]);
        }
        if let Some(to) = self.to_ns {
            push("first_ns < ?", vec![SqlValue::Integer(to)]);
        }
        if !facets {
            if let Some(rule) = &self.rule {
                push("rule = ?", vec![SqlValue::Text(rule.clone())]);
            }
            if let Some(severity) = self.min_severity {
                push("severity >= ?", vec![SqlValue::Integer(severity as i64)]);
            }
        }
        match self.entity.as_deref() {
            None => {}
            Some(entity) => match entity.strip_suffix('*') {
                Some(prefix) => push(
                    "substr(entity, 1, ?) = ?",
                    vec![
                        SqlValue::Integer(prefix.chars().count() as i64),
                        SqlValue::Text(prefix.to_owned()),
                    ],
                ),
                None => push("entity = ?", vec![SqlValue::Text(entity.to_owned())]),
            },
        }
        (clauses.join(" AND "), params)
    }
}

/// One page of alerts, newest (last seen) first.
pub struct Page {
    pub alerts: Vec<Alert>,
    /// Every alert the selection matches.
    pub total: u64,
}

/// The selected alerts from `offset`, newest first; the store answers, a page at a time.
pub fn page(conn: &mut Db, selection: &Selection, limit: u64, offset: u64) -> anyhow::Result<Page> {
    let (clause, params) = selection.sql(false);
    let total: u64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM alerts WHERE {clause}"),
            &dynamic(&params),
        )?
        .get(0)?;
    let ids: Vec<i64> = conn
        .query(
            &format!(
                "SELECT id FROM alerts WHERE {clause} ORDER BY last_ns DESC, id DESC LIMIT {limit} OFFSET {offset}"
            ),
            &dynamic(&params),
        )?
        .iter()
        .map(|r| r.get(0))
        .collect::<anyhow::Result<_>>()?;
    let mut alerts = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(alert) = store_alerts::get(conn, id)? {
            alerts.push(alert);
        }
    }
    Ok(Page { alerts, total })
}

/// Alerts of one rule, by severity.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RuleCount {
    pub rule: String,
    pub total: u64,
    pub low: u64,
    pub medium: u64,
    pub high: u64,
    pub critical: u64,
}

impl RuleCount {
    fn add(&mut self, severity: Severity, n: u64) {
        self.total += n;
        *match severity {
            Severity::Low => &mut self.low,
            Severity::Medium => &mut self.medium,
            Severity::High => &mut self.high,
            Severity::Critical => &mut self.critical,
        } += n;
    }
}

/// Counts per rule and per severity over the selection's range and entity (not its
/// rule or severity: those are what the counts help choose).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Every rule together.
    pub all: RuleCount,
    /// Most alerts first.
    pub rules: Vec<RuleCount>,
}

pub fn counts(conn: &mut Db, selection: &Selection) -> anyhow::Result<Counts> {
    let (clause, params) = selection.sql(true);
    let rows = conn.query(
        &format!(
            "SELECT rule, severity, COUNT(*) FROM alerts WHERE {clause} GROUP BY rule, severity"
        ),
        &dynamic(&params),
    )?;
    let mut counts = Counts::default();
    counts.all.rule = "*".to_owned();
    let mut rules: BTreeMap<String, RuleCount> = BTreeMap::new();
    for row in rows {
        let (rule, rank, n): (String, i64, u64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let severity = severity_of(rank);
        counts.all.add(severity, n);
        rules
            .entry(rule.clone())
            .or_insert_with(|| RuleCount {
                rule,
                ..RuleCount::default()
            })
            .add(severity, n);
    }
    counts.rules = rules.into_values().collect();
    counts
        .rules
        .sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.rule.cmp(&b.rule)));
    Ok(counts)
}

/// How far one delivery target got with an alert, as the store's cursors say.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    /// `nats nats://...`, `alertmanager http://...`, `webhook http://...`: URLs without
    /// user info or query.
    pub target: String,
    /// `delivered` (this alert's latest change was sent), `failing` (not yet, and the
    /// last try failed) or `pending` (not yet).
    pub state: &'static str,
    /// Failed tries in a row.
    pub failures: u64,
    pub last_error: Option<String>,
}

/// Every target that ever delivered or tried, and where it is with `alert`.
pub fn deliveries(conn: &mut Db, alert: &Alert) -> anyhow::Result<Vec<Delivery>> {
    let rows = conn.query(
        "SELECT target, revision, failures, last_error FROM deliveries ORDER BY target",
        args![],
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (target, revision, failures, last_error): (String, i64, i64, Option<String>) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let state = if revision >= alert.revision {
            "delivered"
        } else if last_error.is_some() {
            "failing"
        } else {
            "pending"
        };
        out.push(Delivery {
            target: redact_urls(&target),
            state,
            failures: failures.max(0) as u64,
            last_error: last_error.as_deref().map(redact_urls),
        });
    }
    Ok(out)
}

/// Text with every URL in it cut to scheme, host and path: no user info, query or
/// fragment, where a token or password could sit.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
            .unwrap_or(after.len());
        // "POST http://h/x: refused": trailing punctuation is the sentence's.
        let end = after[..end].trim_end_matches([':', ',', '.', ';']).len();
        let url = &after[..end];
        let (authority_end, has_path) = match url.find(['/', '?', '#']) {
            Some(i) => (i, true),
            None => (url.len(), false),
        };
        let authority = &url[..authority_end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        out.push_str(host);
        if has_path {
            let tail = &url[authority_end..];
            let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
            out.push_str(&tail[..path_end]);
            if path_end < tail.len() {
                out.push_str("?…");
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The Search filters that find the entity's requests: `user:alice` is `user=alice`,
/// `endpoint:GET /orders/{id}` is `method=GET&template=/orders/{id}`; `None` for an
/// entity Search has no filter for.
pub fn entity_search(entity: &str) -> Option<Map<String, Value>> {
    let (kind, value) = entity.split_once(':')?;
    if value.is_empty() {
        return None;
    }
    let mut search = Map::new();
    match kind {
        "user" | "credential" | "client" | "stream" => {
            search.insert(kind.to_owned(), Value::from(value));
        }
        "endpoint" => {
            let (method, template) = value.split_once(' ')?;
            if method != "-" {
                search.insert("method".to_owned(), Value::from(method));
            }
            search.insert("template".to_owned(), Value::from(template));
        }
        _ => return None,
    }
    Some(search)
}

/// An alert as the list on the dashboard shows it: [`json`] plus its revision (which
/// rises with every change, so a live page sees updates) and grouping window.
pub fn listed(alert: &Alert) -> Value {
    let mut value = json(alert);
    if let Value::Object(map) = &mut value {
        map.insert("revision".to_owned(), Value::from(alert.revision));
        map.insert(
            "window_seconds".to_owned(),
            Value::from(alert.window_ns / 1_000_000_000),
        );
    }
    value
}

/// One alert with everything the store knows of it: its deliveries, and the Search
/// filters for its entity's requests over its span (record time) and over all time.
pub fn detail(alert: &Alert, deliveries: &[Delivery]) -> Value {
    let mut value = listed(alert);
    if let Value::Object(map) = &mut value {
        map.insert("deliveries".to_owned(), json!(deliveries));
        let search = entity_search(&alert.entity).map(|filters| {
            let mut during = filters.clone();
            during.insert("from".to_owned(), Value::from(format_ns(alert.first_ns)));
            during.insert(
                "to".to_owned(),
                Value::from(format_ns(alert.last_ns.saturating_add(1))),
            );
            json!({ "during": during, "all": filters })
        });
        map.insert("search".to_owned(), search.unwrap_or(Value::Null));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        StoreAt,
        alerts::{NewAlert, mark_delivered},
    };

    const SEC: i64 = 1_000_000_000;
    const T0: i64 = 1_800_000_000 * SEC;

    /// A store holding, one batch each (so one revision each):
    /// 1 restricted_access high user:bob at T0, records web1#4 and web1#9 (two findings)
    /// 2 least_privilege medium user:bob at T0+10s
    /// 3 restricted_access high user:carol at T0+20s
    /// 4 auth_failures medium client:203.0.113.66 at T0+100s
    /// 5 chain_break critical stream:web2 at T0+200s
    /// rule, severity, entity, time, record
    type Finding = (
        &'static str,
        Severity,
        &'static str,
        i64,
        Option<(&'static str, u64)>,
    );

    fn store() -> (tempfile::TempDir, StoreAt) {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreAt::Sqlite {
            data: dir.path().to_owned(),
        };
        let mut writer = store.open_writer().unwrap();
        let findings: [Finding; 6] = [
            (
                "restricted_access",
                Severity::High,
                "user:bob",
                T0,
                Some(("web1", 4)),
            ),
            (
                "restricted_access",
                Severity::High,
                "user:bob",
                T0 + SEC,
                Some(("web1", 9)),
            ),
            (
                "least_privilege",
                Severity::Medium,
                "user:bob",
                T0 + 10 * SEC,
                Some(("web1", 4)),
            ),
            (
                "restricted_access",
                Severity::High,
                "user:carol",
                T0 + 20 * SEC,
                Some(("web1", 12)),
            ),
            (
                "auth_failures",
                Severity::Medium,
                "client:203.0.113.66",
                T0 + 100 * SEC,
                None,
            ),
            (
                "chain_break",
                Severity::Critical,
                "stream:web2",
                T0 + 200 * SEC,
                None,
            ),
        ];
        for (rule, severity, entity, ts_ns, record) in findings {
            let mut batch = writer.batch().unwrap();
            batch
                .alert(&NewAlert {
                    rule,
                    severity,
                    entity,
                    ts_ns,
                    window_ns: 3600 * SEC,
                    summary: &format!("{entity} {rule}"),
                    record,
                })
                .unwrap();
            batch.commit(std::iter::empty()).unwrap();
        }
        (dir, store)
    }

    fn entities(page: &Page) -> Vec<(&str, &str)> {
        page.alerts
            .iter()
            .map(|a| (a.rule.as_str(), a.entity.as_str()))
            .collect()
    }

    #[test]
    fn pages_are_newest_first_with_the_total_of_the_whole_selection() {
        let (_dir, store) = store();
        let mut conn = store.open_reader().unwrap();
        let all = Selection::default();
        let first = page(&mut conn, &all, 2, 0).unwrap();
        assert_eq!(first.total, 5);
        assert_eq!(
            entities(&first),
            [
                ("chain_break", "stream:web2"),
                ("auth_failures", "client:203.0.113.66")
            ]
        );
        let last = page(&mut conn, &all, 2, 4).unwrap();
        assert_eq!(last.total, 5);
        assert_eq!(entities(&last), [("restricted_access", "user:bob")]);
        assert_eq!(last.alerts[0].count, 2, "two findings, one alert");
        assert_eq!(
            last.alerts[0].records,
            [("web1".to_owned(), 4), ("web1".to_owned(), 9)]
        );
        assert!(page(&mut conn, &all, 10, 50).unwrap().alerts.is_empty());
    }

    #[test]
    fn rule_severity_entity_and_range_narrow_the_page() {
        let (_dir, store) = store();
        let mut conn = store.open_reader().unwrap();
        let by_rule = Selection {
            rule: Some("restricted_access".into()),
            ..Selection::default()
        };
        let got = page(&mut conn, &by_rule, 10, 0).unwrap();
        assert_eq!(
            entities(&got),
            [
                ("restricted_access", "user:carol"),
                ("restricted_access", "user:bob")
            ]
        );
        let high = Selection {
            min_severity: Some(Severity::High),
            ..Selection::default()
        };
        assert_eq!(
            page(&mut conn, &high, 10, 0).unwrap().total,
            3,
            "high and critical"
        );
        let bob = Selection {
            entity: Some("user:bob".into()),
            ..Selection::default()
        };
        assert_eq!(page(&mut conn, &bob, 10, 0).unwrap().total, 2);
        let users = Selection {
            entity: Some("user:*".into()),
            ..Selection::default()
        };
        assert_eq!(page(&mut conn, &users, 10, 0).unwrap().total, 3);
        let not_a_glob = Selection {
            entity: Some("user:%".into()),
            ..Selection::default()
        };
        assert_eq!(page(&mut conn, &not_a_glob, 10, 0).unwrap().total, 0);
        // The span meets the range: bob's restricted_access (T0..T0+1s) is in
        // [T0+1s, T0+15s), carol's (T0+20s) is not.
        let range = Selection {
            from_ns: Some(T0 + SEC),
            to_ns: Some(T0 + 15 * SEC),
            ..Selection::default()
        };
        assert_eq!(
            entities(&page(&mut conn, &range, 10, 0).unwrap()),
            [
                ("least_privilege", "user:bob"),
                ("restricted_access", "user:bob")
            ]
        );
        let injected = Selection {
            rule: Some("x' OR '1'='1".into()),
            ..Selection::default()
        };
        assert_eq!(page(&mut conn, &injected, 10, 0).unwrap().total, 0);
        let (sql, params) = Selection {
            from_ns: Some(1),
            rule: Some("r".into()),
            entity: Some("user:*".into()),
            ..Selection::default()
        }
        .sql(false);
        assert_eq!(
            sql,
            "TRUE AND last_ns >= ?1 AND rule = ?2 AND substr(entity, 1, ?3) = ?4"
        );
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn counts_follow_range_and_entity_but_not_rule_or_severity() {
        let (_dir, store) = store();
        let mut conn = store.open_reader().unwrap();
        let selection = Selection {
            rule: Some("chain_break".into()),
            min_severity: Some(Severity::Critical),
            ..Selection::default()
        };
        let c = counts(&mut conn, &selection).unwrap();
        assert_eq!(
            (
                c.all.total,
                c.all.low,
                c.all.medium,
                c.all.high,
                c.all.critical
            ),
            (5, 0, 2, 2, 1)
        );
        let names: Vec<_> = c.rules.iter().map(|r| (r.rule.as_str(), r.total)).collect();
        assert_eq!(
            names,
            [
                ("restricted_access", 2),
                ("auth_failures", 1),
                ("chain_break", 1),
                ("least_privilege", 1)
            ]
        );
        let bob = counts(
            &mut conn,
            &Selection {
                entity: Some("user:bob".into()),
                to_ns: Some(T0 + 5 * SEC),
                ..Selection::default()
            },
        )
        .unwrap();
        assert_eq!(bob.all.total, 1);
        assert_eq!(bob.rules[0].rule, "restricted_access");
        assert_eq!(bob.rules[0].high, 1);
    }

    #[test]
    fn deliveries_say_where_each_target_is_with_this_alert() {
        let (_dir, store) = store();
        let mut writer = store.open_deliveries().unwrap();
        // Revisions 1..=5 are the five batches (bob's second finding was batch 2).
        mark_delivered(&mut writer, "nats nats://127.0.0.1:4222", 6, None).unwrap();
        mark_delivered(&mut writer, "webhook http://hooks.example/h", 2, None).unwrap();
        mark_delivered(
            &mut writer,
            "webhook http://hooks.example/h",
            2,
            Some("POST http://user:pw@hooks.example/h?token=s3cret: status 500"),
        )
        .unwrap();
        mark_delivered(
            &mut writer,
            "alertmanager http://am:9093/api/v2/alerts",
            3,
            None,
        )
        .unwrap();
        let mut conn = store.open_reader().unwrap();
        let carol = page(
            &mut conn,
            &Selection {
                entity: Some("user:carol".into()),
                ..Selection::default()
            },
            1,
            0,
        )
        .unwrap()
        .alerts
        .remove(0);
        assert_eq!(carol.revision, 4);
        let got = deliveries(&mut conn, &carol).unwrap();
        let states: Vec<_> = got.iter().map(|d| (d.target.as_str(), d.state)).collect();
        assert_eq!(
            states,
            [
                ("alertmanager http://am:9093/api/v2/alerts", "pending"),
                ("nats nats://127.0.0.1:4222", "delivered"),
                ("webhook http://hooks.example/h", "failing"),
            ]
        );
        assert_eq!(got[2].failures, 1);
        assert_eq!(
            got[2].last_error.as_deref(),
            Some("POST http://hooks.example/h?…: status 500")
        );
        let shown = detail(&carol, &got).to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
    }

    #[test]
    fn urls_lose_user_info_query_and_fragment() {
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(
            redact_urls("webhook https://u:p@h.example:8443/a/b?x=1#f, then nats://n:4222"),
            "webhook https://h.example:8443/a/b?…, then nats://n:4222"
        );
        assert_eq!(redact_urls("(http://h?k=v)"), "(http://h?…)");
        assert_eq!(redact_urls("http://user@h/"), "http://h/");
    }

    #[test]
    fn entities_become_search_filters() {
        let search = |e: &str| entity_search(e).map(|m| Value::Object(m).to_string());
        assert_eq!(search("user:bob").as_deref(), Some(r#"{"user":"bob"}"#));
        assert_eq!(
            search("client:203.0.113.66").as_deref(),
            Some(r#"{"client":"203.0.113.66"}"#)
        );
        assert_eq!(
            search("endpoint:GET /orders/{id}").as_deref(),
            Some(r#"{"method":"GET","template":"/orders/{id}"}"#)
        );
        assert_eq!(
            search("endpoint:- /x").as_deref(),
            Some(r#"{"template":"/x"}"#)
        );
        assert_eq!(
            search("stream:web2").as_deref(),
            Some(r#"{"stream":"web2"}"#)
        );
        assert_eq!(search("unknown"), None);
        assert_eq!(search("user:"), None);
        assert_eq!(search("planet:mars"), None);
    }

    #[test]
    fn the_detail_searches_the_entity_over_the_alerts_span() {
        let (_dir, store) = store();
        let mut conn = store.open_reader().unwrap();
        let bob = store_alerts::get(&mut conn, 1).unwrap().unwrap();
        let value = detail(&bob, &[]);
        assert_eq!(value["search"]["all"], json!({ "user": "bob" }));
        assert_eq!(value["search"]["during"]["from"], format_ns(T0));
        assert_eq!(value["search"]["during"]["to"], format_ns(T0 + SEC + 1));
        assert_eq!(value["window_seconds"], 3600);
        assert_eq!(value["revision"], 2);
        assert_eq!(value["deliveries"], json!([]));
        let silent = store_alerts::get(&mut conn, 5).unwrap().unwrap();
        assert_eq!(
            detail(&silent, &[])["search"]["all"],
            json!({ "stream": "web2" })
        );
    }
}
