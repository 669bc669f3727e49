//! Each built-in rule on records with chosen timestamps: tests control time through
//! the records, as a replayed scenario does.
use super::*;
use crate::{
    enrich::{Asset, Network, Person, Place, Sensitivity, Status},
    store::StoreAt,
    verify::EventKind,
};

const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Wednesday 2026-12-02 00:00 UTC.
fn wednesday() -> i64 {
    crate::when::parse_rfc3339_ns("2026-12-02T00:00:00Z").unwrap()
}

struct Req {
    fields: Fields,
    enrichment: Enrichment,
}

fn req(ts_ns: i64, user: Option<&str>, client: &str, path: &str, status: u16) -> Req {
    let template = crate::enrich::template_of(path);
    Req {
        fields: Fields {
            kind: Some(tracer_audit::Kind::Access),
            stream: "web1".to_owned(),
            seq: (ts_ns / 1_000_000) as u64,
            ts_ns,
            method: Some("GET".to_owned()),
            path: Some(path.to_owned()),
            status: Some(status),
            client: Some(client.parse().unwrap()),
            user_name: user.map(str::to_owned),
            ..Fields::default()
        },
        enrichment: Enrichment {
            template,
            ..Enrichment::default()
        },
    }
}

impl Req {
    fn asset(mut self, sensitivity: Sensitivity, roles: &[&str], users: &[&str]) -> Self {
        self.enrichment.asset = Some(Asset {
            name: "payroll".to_owned(),
            dataset: None,
            owner: None,
            sensitivity,
            allowed_roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            allowed_users: users.iter().map(|u| (*u).to_owned()).collect(),
        });
        self
    }

    fn geo(mut self, country: &str, location: (f64, f64), asn: u32) -> Self {
        self.enrichment.place = Some(Place {
            network: Network::Public,
            geo: crate::enrich::Geo {
                country: Some(country.to_owned()),
                city: None,
                location: Some(location),
                asn: Some(asn),
                as_org: None,
            },
        });
        self
    }

    fn roles(mut self, roles: &[&str]) -> Self {
        self.fields.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self
    }
}

fn detector(toml_text: &str) -> Detector {
    Detector::new(Detections::from_toml(toml_text).unwrap(), None, Vec::new())
}

fn run(d: &mut Detector, r: &Req) -> Vec<Alerting> {
    d.observe(&Observation {
        fields: &r.fields,
        enrichment: &r.enrichment,
        link: Link::Linked,
    })
}

fn rules(found: &[Alerting]) -> Vec<&str> {
    found.iter().map(|a| a.finding.rule.as_str()).collect()
}

/// Everything off but the rules named.
fn only(names: &[&str]) -> String {
    const ALL: [&str; 15] = [
        "off_hours",
        "new_source",
        "volume",
        "scraping",
        "auth_failures",
        "credential_stuffing",
        "scanning",
        "server_errors",
        "restricted_access",
        "first_confidential",
        "least_privilege",
        "broken_auth",
        "disabled_user",
        "credential_sharing",
        "integrity",
    ];
    ALL.iter()
        .map(|r| format!("[rules.{r}]\nenabled = {}\n", names.contains(r)))
        .collect()
}

#[test]
fn off_hours_names_the_schedule_and_rises_on_restricted_assets() {
    let mut d = detector(&format!(
        "[calendar]\ntimezone = \"UTC\"\nhours = \"08:00-18:00\"\n{}",
        only(&["off_hours"])
    ));
    let at_work = req(
        wednesday() + 10 * HOUR,
        Some("alice"),
        "203.0.113.5",
        "/hr/salaries",
        200,
    );
    assert!(run(&mut d, &at_work).is_empty());
    let night = req(
        wednesday() + 2 * HOUR + 14 * MIN,
        Some("alice"),
        "203.0.113.5",
        "/hr/salaries",
        200,
    )
    .asset(Sensitivity::Restricted, &["hr"], &[]);
    let found = run(&mut d, &night);
    assert_eq!(rules(&found), ["off_hours"]);
    assert_eq!(
        found[0].finding.severity,
        Severity::High,
        "medium, raised on a restricted asset"
    );
    assert_eq!(found[0].finding.entity, "user:alice");
    let summary = &found[0].summary;
    assert!(
        summary.contains("alice GET /hr/salaries (asset payroll, restricted)"),
        "{summary}"
    );
    assert!(summary.contains("at 02:14 UTC"), "{summary}");
    assert!(summary.contains("outside working hours"), "{summary}");
    let anonymous = req(wednesday() + 2 * HOUR, None, "203.0.113.5", "/", 200);
    assert!(run(&mut d, &anonymous).is_empty(), "nobody to be off hours");
}

#[test]
fn new_sources_alert_only_after_learning_and_only_once() {
    let mut d = detector(&format!("learning = \"7d\"\n{}", only(&["new_source"])));
    let t0 = wednesday() + 10 * HOUR;
    for day in 0..8 {
        let home = req(t0 + day * DAY, Some("alice"), "203.0.113.5", "/", 200).geo(
            "DE",
            (52.5, 13.4),
            3320,
        );
        assert!(
            run(&mut d, &home).is_empty(),
            "day {day}: learning, or known"
        );
    }
    // During learning, a second network is just learned.
    let mut d2 = detector(&format!("learning = \"7d\"\n{}", only(&["new_source"])));
    run(&mut d2, &req(t0, Some("bob"), "203.0.113.5", "/", 200));
    assert!(
        run(
            &mut d2,
            &req(t0 + DAY, Some("bob"), "198.51.100.7", "/", 200)
        )
        .is_empty()
    );

    let away =
        req(t0 + 9 * DAY, Some("alice"), "198.51.100.7", "/", 200).geo("BR", (-23.5, -46.6), 28573);
    let found = run(&mut d, &away);
    assert_eq!(rules(&found), ["new_source"]);
    let summary = &found[0].summary;
    assert!(summary.contains("new country BR"), "{summary}");
    assert!(summary.contains("new ASN AS28573"), "{summary}");
    assert!(summary.contains("new network 198.51.100.0/24"), "{summary}");
    assert_eq!(
        found[0].finding.severity,
        Severity::Medium,
        "a new country is one step up"
    );
    let again = req(t0 + 9 * DAY + HOUR, Some("alice"), "198.51.100.7", "/", 200).geo(
        "BR",
        (-23.5, -46.6),
        28573,
    );
    assert!(run(&mut d, &again).is_empty(), "known now");
}

#[test]
fn volume_alerts_once_when_a_bucket_leaves_the_baseline() {
    let mut d = detector(&format!(
        "[rules.volume]\nwarmup = 24\nmin_requests = 50\n{}",
        only(&["volume"]).replace("[rules.volume]\nenabled = true\n", "")
    ));
    let t0 = wednesday();
    let mut findings = 0;
    for hour in 0..30 {
        for i in 0..(8 + hour % 5) {
            let r = req(
                t0 + hour * HOUR + i * MIN,
                Some("carol"),
                "10.0.0.1",
                "/a",
                200,
            );
            findings += run(&mut d, &r).len();
        }
    }
    assert_eq!(findings, 0, "normal hours");
    let mut found = Vec::new();
    for i in 0..400 {
        let r = req(
            t0 + 30 * HOUR + i * 1_000_000_000,
            Some("carol"),
            "10.0.0.1",
            "/a",
            200,
        );
        found.extend(run(&mut d, &r));
    }
    let users: Vec<_> = found
        .iter()
        .filter(|a| a.finding.entity == "user:carol")
        .collect();
    assert_eq!(users.len(), 1, "once per bucket");
    assert!(
        users[0].summary.contains("baseline"),
        "{}",
        users[0].summary
    );
}

#[test]
fn walking_ids_under_one_template_is_scraping() {
    let mut d = detector(&format!(
        "[rules.scraping]\ndistinct = 50\n{}",
        only(&["scraping"]).replace("[rules.scraping]\nenabled = true\n", "")
    ));
    let t0 = wednesday() + 10 * HOUR;
    for i in 0..20 {
        // Revisiting a few resources is normal.
        let r = req(
            t0 + i * MIN,
            Some("dave"),
            "10.0.0.2",
            &format!("/customers/{}", i % 3 + 1),
            200,
        );
        assert!(run(&mut d, &r).is_empty());
    }
    let mut found = Vec::new();
    for i in 0..60 {
        let r = req(
            t0 + HOUR + i * 1_000_000_000,
            Some("dave"),
            "10.0.0.2",
            &format!("/customers/{}", 1000 + i),
            200,
        );
        found.extend(run(&mut d, &r));
    }
    assert!(!found.is_empty());
    assert_eq!(found[0].finding.rule, "scraping");
    assert!(
        found[0].summary.contains("/customers/{id}"),
        "{}",
        found[0].summary
    );
}

#[test]
fn failure_bursts_brute_force_stuffing_scanning_and_server_errors() {
    let mut d = detector(&only(&[
        "auth_failures",
        "credential_stuffing",
        "scanning",
        "server_errors",
    ]));
    let t0 = wednesday() + 10 * HOUR;
    let mut fired = |rs: Vec<Req>| {
        let mut all = Vec::new();
        for r in &rs {
            all.extend(run(&mut d, r).into_iter().map(|a| a.finding.rule));
        }
        all
    };
    let brute: Vec<Req> = (0..19)
        .map(|i| {
            req(
                t0 + i * 1_000_000_000,
                Some("erin"),
                "198.51.100.9",
                "/login",
                401,
            )
        })
        .collect();
    assert!(fired(brute).is_empty(), "19 is under the threshold");
    let more = fired(vec![req(
        t0 + 20_000_000_000,
        Some("erin"),
        "198.51.100.9",
        "/login",
        401,
    )]);
    assert!(more.contains(&"auth_failures".to_owned()), "{more:?}");
    let stuffing: Vec<Req> = (0..5)
        .map(|i| {
            req(
                t0 + i * 1_000_000_000,
                Some(&format!("user{i}")),
                "198.51.100.10",
                "/login",
                401,
            )
        })
        .collect();
    assert!(fired(stuffing).contains(&"credential_stuffing".to_owned()));
    let scan: Vec<Req> = (0..30)
        .map(|i| {
            req(
                t0 + i * 100_000_000,
                None,
                "198.51.100.11",
                &format!("/wp-{i}.php"),
                404,
            )
        })
        .collect();
    assert_eq!(fired(scan).iter().filter(|r| *r == "scanning").count(), 1);
    let errors: Vec<Req> = (0..20)
        .map(|i| {
            req(
                t0 + i * 100_000_000,
                None,
                &format!("10.0.1.{i}"),
                &format!("/orders/{i}"),
                503,
            )
        })
        .collect();
    assert_eq!(
        fired(errors),
        ["server_errors"],
        "one endpoint, many clients"
    );
}

#[test]
fn sensitive_assets_and_privileges() {
    let mut d = detector(&format!(
        "learning = \"1d\"\n{}",
        only(&[
            "restricted_access",
            "first_confidential",
            "least_privilege",
            "broken_auth",
            "disabled_user"
        ])
    ));
    let t0 = wednesday() + 10 * HOUR;
    let restricted = |user: &str, roles: &[&str], status| {
        req(t0, Some(user), "10.0.0.3", "/hr/salaries", status)
            .asset(Sensitivity::Restricted, &["hr"], &["frank"])
            .roles(roles)
    };
    assert!(
        run(&mut d, &restricted("gina", &["hr"], 200)).is_empty(),
        "role allowed"
    );
    assert!(
        run(&mut d, &restricted("frank", &[], 200)).is_empty(),
        "listed user"
    );
    assert_eq!(
        rules(&run(&mut d, &restricted("mallory", &["dev"], 403))),
        ["restricted_access"],
        "trying counts"
    );
    assert_eq!(
        rules(&run(&mut d, &restricted("mallory", &["dev"], 200))),
        ["restricted_access", "least_privilege"]
    );

    let mut expired = req(t0, Some("henry"), "10.0.0.4", "/api", 200);
    expired.fields.token_verified = Some(false);
    expired.fields.token_failure = Some("expired".to_owned());
    let found = run(&mut d, &expired);
    assert_eq!(rules(&found), ["broken_auth"]);
    assert_eq!(found[0].finding.severity, Severity::Critical);
    expired.fields.status = Some(401);
    assert!(
        run(&mut d, &expired).is_empty(),
        "refused: the server did its job"
    );
    expired.fields.status = Some(200);
    expired.fields.token_failure = Some("unverified".to_owned());
    assert!(
        run(&mut d, &expired).is_empty(),
        "no keys at the sensor says nothing"
    );

    let mut gone = req(t0, Some("ivan"), "10.0.0.5", "/api", 200);
    gone.enrichment.person = Some(Person {
        id: "ivan".to_owned(),
        full_name: None,
        email: None,
        department: None,
        status: Status::Disabled,
    });
    assert_eq!(rules(&run(&mut d, &gone)), ["disabled_user"]);

    let confidential = |ts| {
        req(ts, Some("judy"), "10.0.0.6", "/finance", 200).asset(
            Sensitivity::Confidential,
            &[],
            &[],
        )
    };
    assert!(run(&mut d, &req(t0, Some("judy"), "10.0.0.6", "/", 200)).is_empty());
    let found = run(&mut d, &confidential(t0 + 2 * DAY));
    assert_eq!(rules(&found), ["first_confidential"]);
    assert!(
        run(&mut d, &confidential(t0 + 3 * DAY)).is_empty(),
        "not the first any more"
    );
}

#[test]
fn one_credential_in_two_distant_places_at_once_is_shared() {
    let mut d = detector(&only(&["credential_sharing"]));
    let t0 = wednesday() + 10 * HOUR;
    let mut a = req(t0, None, "203.0.113.20", "/api", 200).geo("DE", (52.5, 13.4), 3320);
    a.fields.credential = Some("k1".to_owned());
    assert!(run(&mut d, &a).is_empty());
    let mut near = req(t0 + MIN, None, "203.0.113.21", "/api", 200).geo("DE", (53.5, 10.0), 3320);
    near.fields.credential = Some("k1".to_owned());
    assert!(
        run(&mut d, &near).is_empty(),
        "Hamburg and Berlin are close"
    );
    let mut far =
        req(t0 + 2 * MIN, None, "198.51.100.30", "/api", 200).geo("BR", (-23.5, -46.6), 28573);
    far.fields.credential = Some("k1".to_owned());
    let found = run(&mut d, &far);
    assert_eq!(rules(&found), ["credential_sharing"]);
    assert_eq!(found[0].finding.entity, "credential:k1");
    assert!(
        found[0].summary.contains("km apart"),
        "{}",
        found[0].summary
    );
}

#[test]
fn integrity_events_gaps_and_silence() {
    let mut d = detector(&only(&["integrity"]));
    let event = |kind| Event {
        stream: "web1".to_owned(),
        seq: 7,
        kind,
        detail: "x".to_owned(),
    };
    let found = d.event(&event(EventKind::Modified), 0);
    assert_eq!(
        (found[0].finding.rule.as_str(), found[0].finding.severity),
        ("chain_break", Severity::Critical)
    );
    assert_eq!(
        d.event(&event(EventKind::Signature), 0)[0].finding.rule,
        "signature"
    );
    assert_eq!(
        d.event(&event(EventKind::Loss), 0)[0].finding.rule,
        "sensor_loss"
    );
    assert!(d.event(&event(EventKind::Restart), 0).is_empty());
    let t0 = wednesday();
    let r = req(t0, None, "10.0.0.1", "/", 200);
    let gap = d.observe(&Observation {
        fields: &r.fields,
        enrichment: &r.enrichment,
        link: Link::AfterGap,
    });
    assert_eq!(rules(&gap), ["chain_gap"]);
    // The pipeline says which lines are signs of life (`signs_of_life`).
    d.heard("web1", t0);
    assert!(d.tick(t0 + 4 * MIN).is_empty());
    let silent = d.tick(t0 + 6 * MIN);
    assert_eq!(rules(&silent), ["sensor_silent"]);
    assert!(
        d.tick(t0 + 60 * MIN).is_empty(),
        "once until it speaks again"
    );
}

#[test]
fn what_was_learned_survives_a_restart_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = StoreAt::Sqlite {
        data: dir.path().to_owned(),
    }
    .open_writer()
    .unwrap();
    let settings =
        || Detections::from_toml(&format!("learning = \"1d\"\n{}", only(&["new_source"]))).unwrap();
    let t0 = wednesday() + 10 * HOUR;
    let mut first = Detector::new(settings(), None, writer.detect_state().unwrap());
    run(&mut first, &req(t0, Some("kim"), "203.0.113.5", "/", 200));
    let mut batch = writer.batch().unwrap();
    first.save(&mut batch).unwrap();
    batch.commit(std::iter::empty()).unwrap();

    let stored = writer.detect_state().unwrap();
    assert_eq!(stored.len(), 1);
    let mut second = Detector::new(settings(), None, stored);
    let found = run(
        &mut second,
        &req(t0 + 2 * DAY, Some("kim"), "198.51.100.7", "/", 200),
    );
    assert_eq!(
        rules(&found),
        ["new_source"],
        "kim's learning period and sources came back"
    );
    let mut forgetful = Detector::new(settings(), None, Vec::new());
    assert!(
        run(
            &mut forgetful,
            &req(t0 + 2 * DAY, Some("kim"), "198.51.100.7", "/", 200)
        )
        .is_empty(),
        "without the store it would be learning again"
    );
}

#[test]
fn findings_group_into_one_alert_per_rule_and_entity_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreAt::Sqlite {
        data: dir.path().to_owned(),
    };
    let mut writer = store.open_writer().unwrap();
    let mut d = detector(&only(&["auth_failures"]));
    let t0 = wednesday() + 10 * HOUR;
    let mut batch = writer.batch().unwrap();
    for i in 0..45 {
        let r = req(t0 + i * 1_000_000_000, None, "198.51.100.9", "/login", 401);
        for alerting in run(&mut d, &r) {
            batch.alert(&alerting.new_alert()).unwrap();
        }
    }
    batch.commit(std::iter::empty()).unwrap();
    let mut conn = store.open_reader().unwrap();
    let alerts = crate::store::alerts::list(
        &mut conn,
        &crate::store::alerts::AlertFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].count, 26, "from the 20th failure on");
    assert_eq!(
        alerts[0].records.len(),
        crate::store::alerts::MAX_LINKED_RECORDS
    );
    assert_eq!(alerts[0].entity, "client:198.51.100.9");
}

/// A detection rule, a detection rule a correlation uses, and the correlation.
const SIGMA_RULES: &str = r#"title: Path traversal to passwd
id: passwd-read
status: test
logsource:
  category: webserver
detection:
  selection:
    cs-uri-stem|contains: '/etc/passwd'
  condition: selection
level: high
---
title: Not found
id: not-found
name: not_found
logsource:
  category: webserver
detection:
  selection:
    sc-status: 404
  condition: selection
level: low
---
title: Many 404 from one client
id: many-404
correlation:
  type: event_count
  rules:
    - not_found
  group-by:
    - c-ip
  timespan: 1m
  condition:
    gte: 3
level: medium
"#;

#[test]
fn sigma_detection_and_correlation_rules_run_on_webserver_fields_with_record_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, SIGMA_RULES).unwrap();
    let sigma = Sigma::load(&[path]).unwrap();
    let mut d = Detector::new(
        Detections::from_toml(&only(&[])).unwrap(),
        sigma,
        Vec::new(),
    );
    let t0 = wednesday() + 10 * HOUR;
    let found = run(
        &mut d,
        &req(t0, None, "198.51.100.40", "/static/../../etc/passwd", 200),
    );
    assert!(
        rules(&found).contains(&"sigma.passwd-read"),
        "{:?}",
        rules(&found)
    );
    let mut correlated = Vec::new();
    for i in 0..3 {
        // Two minutes apart: never three within a minute.
        correlated.extend(run(
            &mut d,
            &req(t0 + i * 2 * MIN, None, "198.51.100.41", "/x", 404),
        ));
    }
    assert!(!rules(&correlated).contains(&"sigma.many-404"));
    for i in 0..3 {
        correlated.extend(run(
            &mut d,
            &req(
                t0 + HOUR + i * 1_000_000_000,
                None,
                "198.51.100.41",
                "/x",
                404,
            ),
        ));
    }
    let many: Vec<_> = correlated
        .iter()
        .filter(|a| a.finding.rule == "sigma.many-404")
        .collect();
    assert!(!many.is_empty(), "{:?}", rules(&correlated));
    assert_eq!(many[0].finding.entity, "c-ip=198.51.100.41");
    assert_eq!(many[0].finding.severity, Severity::Medium);
}

/// A request under `user`'s name that the server answered with `status`.
fn claimed(ts_ns: i64, user: &str, client: &str, status: u16) -> Req {
    req(ts_ns, Some(user), client, "/orders/1", status)
}

#[test]
fn denied_requests_do_not_make_a_user_off_hours() {
    let mut d = detector(&format!(
        "[calendar]\ntimezone = \"UTC\"\nhours = \"08:00-18:00\"\n{}",
        only(&["off_hours", "auth_failures"])
    ));
    let night = wednesday() + 2 * HOUR;
    for status in [401, 403] {
        assert!(
            !rules(&run(
                &mut d,
                &claimed(night, "root", "203.0.113.66", status)
            ))
            .contains(&"off_hours"),
            "a {status} at night is someone trying root, not root at work"
        );
    }
    let mut no_answer = claimed(night, "root", "203.0.113.66", 200);
    no_answer.fields.status = None;
    assert!(run(&mut d, &no_answer).is_empty(), "no response, no proof");
    assert_eq!(
        rules(&run(&mut d, &claimed(night, "root", "203.0.113.66", 200))),
        ["off_hours"]
    );
    assert_eq!(
        rules(&run(&mut d, &claimed(night, "root", "203.0.113.66", 404))),
        ["off_hours"],
        "a 404 was served to root"
    );
    // The failures still count where they belong.
    let mut failures = Vec::new();
    for i in 0..20 {
        failures.extend(run(
            &mut d,
            &claimed(night + i * 1_000_000_000, "root", "203.0.113.66", 401),
        ));
    }
    assert!(
        failures
            .iter()
            .any(|a| a.finding.rule == "auth_failures" && a.finding.entity == "user:root"),
        "{:?}",
        rules(&failures)
    );
    assert!(!rules(&failures).contains(&"off_hours"));
}

#[test]
fn a_name_sprayed_from_a_new_place_neither_alerts_nor_teaches_new_source() {
    let mut d = detector(&format!("learning = \"1d\"\n{}", only(&["new_source"])));
    let t0 = wednesday() + 10 * HOUR;
    let home = |ts| claimed(ts, "alice", "203.0.113.5", 200).geo("DE", (52.5, 13.4), 3320);
    let away =
        |ts, status| claimed(ts, "alice", "198.51.100.7", status).geo("BR", (-23.5, -46.6), 28573);
    assert!(run(&mut d, &home(t0)).is_empty());
    assert!(run(&mut d, &home(t0 + 2 * DAY)).is_empty());
    for i in 0..5 {
        assert!(
            run(&mut d, &away(t0 + 2 * DAY + i * MIN, 401)).is_empty(),
            "a wrong password from Brazil is not alice in Brazil"
        );
    }
    let found = run(&mut d, &away(t0 + 2 * DAY + HOUR, 200));
    assert_eq!(rules(&found), ["new_source"], "the failures taught nothing");
    assert!(
        found[0].summary.contains("new country BR"),
        "{}",
        found[0].summary
    );

    // A name only ever sprayed has not started learning: its first accepted request
    // starts it.
    for i in 0..5 {
        assert!(run(&mut d, &claimed(t0 + i * HOUR, "zed", "198.51.100.9", 401)).is_empty());
    }
    assert!(run(&mut d, &claimed(t0 + 3 * DAY, "zed", "203.0.113.9", 200)).is_empty());
    assert!(
        run(
            &mut d,
            &claimed(t0 + 3 * DAY + HOUR, "zed", "203.0.113.10", 200)
        )
        .is_empty(),
        "zed is still learning: the sprayed attempts were not zed"
    );
}

#[test]
fn a_forged_token_is_not_the_identity_it_names_but_an_expired_one_is() {
    let mut d = detector(&format!(
        "[calendar]\ntimezone = \"UTC\"\nhours = \"08:00-18:00\"\n{}",
        only(&["off_hours", "broken_auth"])
    ));
    let night = wednesday() + 2 * HOUR;
    let mut forged = claimed(night, "alice", "203.0.113.5", 200);
    forged.fields.token_verified = Some(false);
    forged.fields.token_failure = Some("bad_signature".to_owned());
    assert_eq!(
        rules(&run(&mut d, &forged)),
        ["broken_auth"],
        "the server took a forged token: broken_auth, not alice off hours"
    );
    let mut expired = forged;
    expired.fields.token_failure = Some("expired".to_owned());
    assert_eq!(
        rules(&run(&mut d, &expired)),
        ["off_hours", "broken_auth"],
        "an expired token still names whom its issuer signed it for"
    );
}

#[test]
fn failed_logins_from_afar_are_not_credential_sharing() {
    let mut d = detector(&only(&["credential_sharing"]));
    let t0 = wednesday() + 10 * HOUR;
    let berlin = |ts| claimed(ts, "alice", "203.0.113.20", 200).geo("DE", (52.5, 13.4), 3320);
    let brazil =
        |ts, status| claimed(ts, "alice", "198.51.100.30", status).geo("BR", (-23.5, -46.6), 28573);
    assert!(run(&mut d, &berlin(t0)).is_empty());
    assert!(
        run(&mut d, &brazil(t0 + MIN, 401)).is_empty(),
        "trying alice's name from Brazil"
    );
    assert!(
        run(&mut d, &berlin(t0 + 2 * MIN)).is_empty(),
        "the failure from Brazil was not remembered as alice's"
    );
    assert_eq!(
        rules(&run(&mut d, &brazil(t0 + 3 * MIN, 200))),
        ["credential_sharing"]
    );
}

#[test]
fn volume_counts_users_only_when_accepted_and_clients_always() {
    let mut d = detector(&format!(
        "[rules.volume]\nbucket = \"1h\"\nwarmup = 3\nmin_requests = 50\n{}",
        only(&["volume"]).replace("[rules.volume]\nenabled = true\n", "")
    ));
    let t0 = wednesday();
    for hour in 0..5 {
        for i in 0..10 {
            let r = claimed(t0 + hour * HOUR + i * MIN, "carol", "10.0.0.1", 200);
            assert!(run(&mut d, &r).is_empty());
        }
    }
    let mut found = Vec::new();
    for i in 0..300 {
        let r = claimed(t0 + 5 * HOUR + i * 1_000_000_000, "carol", "10.0.0.1", 401);
        found.extend(run(&mut d, &r));
    }
    let entities: Vec<&str> = found.iter().map(|a| a.finding.entity.as_str()).collect();
    assert_eq!(
        entities,
        ["client:10.0.0.1"],
        "the client's flood counts; carol's name on 401s does not"
    );
}

#[test]
fn records_and_events_do_not_break_a_silence_only_signs_of_life_do() {
    let mut d = detector(&only(&["integrity"]));
    let t0 = wednesday();
    let event = |kind| Event {
        stream: "web1".to_owned(),
        seq: 7,
        kind,
        detail: "x".to_owned(),
    };
    // Watched from its first line; records, a loss line's event and later lines that
    // prove nothing (`seen`) do not keep it from silence.
    d.seen("web1", t0);
    let r = req(t0 + 2 * MIN, None, "10.0.0.1", "/", 200);
    assert!(run(&mut d, &r).is_empty());
    d.event(&event(EventKind::Loss), t0 + 3 * MIN);
    d.seen("web1", t0 + 4 * MIN);
    assert_eq!(rules(&d.tick(t0 + 6 * MIN)), ["sensor_silent"]);
    // A sign of life ends it, and the next silence is reported again.
    d.heard("web1", t0 + 7 * MIN);
    assert!(d.tick(t0 + 11 * MIN).is_empty());
    assert_eq!(rules(&d.tick(t0 + 13 * MIN)), ["sensor_silent"]);
}

#[test]
fn a_silent_sensor_that_speaks_again_is_revived_once() {
    let mut d = detector(&only(&["integrity"]));
    let t0 = wednesday();
    let r = req(t0, None, "10.0.0.1", "/", 200);
    assert!(run(&mut d, &r).is_empty());
    d.heard("web1", t0);
    assert!(d.revived().is_empty(), "never silent");
    assert_eq!(rules(&d.tick(t0 + 6 * MIN)), ["sensor_silent"]);
    assert!(d.revived().is_empty(), "still silent");
    // Any verified line is a sign of life: here a checkpoint.
    d.heard("web1", t0 + 7 * MIN);
    assert_eq!(
        d.revived(),
        [("sensor_silent", "stream:web1".to_owned())],
        "the silence is over"
    );
    d.heard("web1", t0 + 8 * MIN);
    assert!(d.revived().is_empty(), "once");
}

#[test]
fn a_stream_can_have_its_own_silence() {
    let settings = format!(
        "{}\n[rules.integrity.streams.night-batch]\nsilence = \"30m\"\n",
        only(&["integrity"])
    );
    let mut d = detector(&settings);
    let t0 = wednesday();
    d.heard("web1", t0);
    d.heard("night-batch", t0);
    let silent = d.tick(t0 + 6 * MIN);
    assert_eq!(rules(&silent), ["sensor_silent"]);
    assert_eq!(silent[0].finding.entity, "stream:web1");
    assert!(d.tick(t0 + 29 * MIN).is_empty());
    let silent = d.tick(t0 + 31 * MIN);
    assert_eq!(rules(&silent), ["sensor_silent"]);
    assert_eq!(silent[0].finding.entity, "stream:night-batch");
    assert!(
        silent[0].summary.contains("longer than 30m"),
        "{}",
        silent[0].summary
    );
}

#[test]
fn the_listing_names_each_rule_as_its_alerts_do_with_its_resolved_settings() {
    let dir = tempfile::tempdir().unwrap();
    let detections = dir.path().join("detections.toml");
    std::fs::write(
        &detections,
        "learning = \"2d\"\n[calendar]\ntimezone = \"Europe/Berlin\"\n[calendar.users.olga]\nhours = \"22:00-06:00\"\n\n[rules.scraping]\nenabled = false\n\n[rules.auth_failures]\nthreshold = 3\nseverity = \"critical\"\n",
    )
    .unwrap();
    let sigma = dir.path().join("rules.yml");
    std::fs::write(&sigma, SIGMA_RULES).unwrap();
    let Listing {
        learning,
        max_entities,
        calendar,
        rules: listed,
    } = listing(Some(&detections), std::slice::from_ref(&sigma)).unwrap();
    assert_eq!(learning, "2days");
    assert_eq!(max_entities, 100_000);
    assert_eq!(
        calendar["default"],
        "Mon,Tue,Wed,Thu,Fri 08:00-18:00 Europe/Berlin"
    );
    assert_eq!(
        calendar["users"]["olga"],
        "Mon,Tue,Wed,Thu,Fri 22:00-06:00 Europe/Berlin"
    );
    let by_rule: std::collections::HashMap<&str, &Listed> =
        listed.iter().map(|l| (l.rule.as_str(), l)).collect();
    assert_eq!(by_rule.len(), listed.len(), "each rule once");
    let built_in: Vec<&str> = listed
        .iter()
        .filter(|l| l.source == "built-in")
        .map(|l| l.rule.as_str())
        .collect();
    assert_eq!(
        built_in,
        [
            "auth_failures",
            "broken_auth",
            "credential_sharing",
            "credential_stuffing",
            "disabled_user",
            "first_confidential",
            "least_privilege",
            "new_source",
            "off_hours",
            "restricted_access",
            "scanning",
            "scraping",
            "server_errors",
            "volume",
        ]
    );
    assert!(!by_rule["scraping"].runs);
    assert!(by_rule["volume"].runs);
    let auth = by_rule["auth_failures"];
    assert_eq!(auth.severity, Severity::Critical);
    assert_eq!(auth.settings["threshold"], 3);
    assert_eq!(auth.settings["window"], "5m");
    for rule in [
        "chain_break",
        "signature",
        "chain_gap",
        "sensor_loss",
        "sensor_silent",
    ] {
        assert_eq!(by_rule[rule].source, "integrity", "{rule}");
        assert_eq!(by_rule[rule].settings["silence"], "5m", "{rule}");
    }
    let passwd = by_rule["sigma.passwd-read"];
    assert_eq!(passwd.severity, Severity::High);
    assert_eq!(passwd.settings["kind"], "detection");
    assert_eq!(passwd.source, sigma.display().to_string());
    let many = by_rule["sigma.many-404"];
    assert_eq!(many.severity, Severity::Medium);
    assert_eq!(many.settings["kind"], "correlation: event_count");
    assert_eq!(listed.len(), 14 + 5 + 3);

    std::fs::write(&detections, "[rules.scraping]\nthreshold = 3\n").unwrap();
    let error = listing(Some(&detections), &[]).unwrap_err();
    assert!(
        format!("{error:#}").contains("detections.toml:2:1"),
        "{error:#}"
    );
}
