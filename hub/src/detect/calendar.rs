//! Working hours: a week of days and a span of local time in an IANA zone, with
//! overrides per user and per department (a night shift, a team in another zone).
use std::collections::HashMap;

use jiff::{Timestamp, civil::Weekday, tz::TimeZone};
use serde::{Deserialize, Deserializer, de::Error as _};

/// A working week as written in the detections file; every field may be left to the
/// calendar it overrides. Each value is checked as it is read, so a bad one is a
/// parse error that names its line and key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub timezone: Option<Zone>,
    pub days: Option<Vec<Day>>,
    /// `HH:MM-HH:MM`, local; an end before the start runs past midnight.
    pub hours: Option<Hours>,
}

/// `[calendar]`: the default schedule's keys, and the overrides.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    pub timezone: Option<Zone>,
    pub days: Option<Vec<Day>>,
    pub hours: Option<Hours>,
    #[serde(default)]
    pub users: HashMap<String, RawSchedule>,
    #[serde(default)]
    pub departments: HashMap<String, RawSchedule>,
}

impl RawCalendar {
    fn default_schedule(&self) -> RawSchedule {
        RawSchedule {
            timezone: self.timezone.clone(),
            days: self.days.clone(),
            hours: self.hours,
        }
    }
}

/// An IANA time zone, by name.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    zone: TimeZone,
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let zone = jiff::tz::db()
            .get(&name)
            .map_err(|_| D::Error::custom(CalendarError::Zone(name.clone())))?;
        Ok(Self { name, zone })
    }
}

/// A day of the week, Monday 0.
#[derive(Clone, Copy, Debug)]
pub struct Day(usize);

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        day_index(&text)
            .map(Day)
            .ok_or_else(|| D::Error::custom(CalendarError::Day(text)))
    }
}

/// `HH:MM-HH:MM` as minutes of the day.
#[derive(Clone, Copy, Debug)]
pub struct Hours {
    start_min: u16,
    end_min: u16,
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_hours(&text)
            .map(|(start_min, end_min)| Hours { start_min, end_min })
            .ok_or_else(|| D::Error::custom(CalendarError::Hours(text)))
    }
}

#[derive(Clone, Debug)]
pub struct Schedule {
    zone: TimeZone,
    zone_name: String,
    /// Monday first.
    days: [bool; 7],
    start_min: u16,
    end_min: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Berlin)")]
    Zone(String),
    #[error("unknown day {0:?} (mon, tue, wed, thu, fri, sat or sun)")]
    Day(String),
    #[error("hours {0:?} are not HH:MM-HH:MM")]
    Hours(String),
}

impl Schedule {
    fn resolve(raw: &RawSchedule, base: Option<&Schedule>) -> Self {
        let (zone, zone_name) = match (&raw.timezone, base) {
            (Some(zone), _) => (zone.zone.clone(), zone.name.clone()),
            (None, Some(base)) => (base.zone.clone(), base.zone_name.clone()),
            (None, None) => (TimeZone::UTC, "UTC".to_owned()),
        };
        let days = match (&raw.days, base) {
            (Some(days), _) => {
                let mut set = [false; 7];
                for day in days {
                    set[day.0] = true;
                }
                set
            }
            (None, Some(base)) => base.days,
            (None, None) => [true, true, true, true, true, false, false],
        };
        let (start_min, end_min) = match (&raw.hours, base) {
            (Some(hours), _) => (hours.start_min, hours.end_min),
            (None, Some(base)) => (base.start_min, base.end_min),
            (None, None) => (8 * 60, 18 * 60),
        };
        Self {
            zone,
            zone_name,
            days,
            start_min,
            end_min,
        }
    }

    /// Whether `ts_ns` falls in working time. A span that runs past midnight belongs
    /// to the day it starts on.
    pub fn is_working(&self, ts_ns: i64) -> bool {
        let Ok(at) = Timestamp::from_nanosecond(i128::from(ts_ns)) else {
            return false;
        };
        let local = at.to_zoned(self.zone.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let day = weekday_index(local.weekday());
        if self.start_min <= self.end_min {
            self.days[day] && (self.start_min..self.end_min).contains(&minute)
        } else {
            (self.days[day] && minute >= self.start_min)
                || (self.days[(day + 6) % 7] && minute < self.end_min)
        }
    }

    /// `Mon-Fri 08:00-18:00 Europe/Berlin`, for alert summaries.
    pub fn describe(&self) -> String {
        const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let days: Vec<&str> = (0..7).filter(|&d| self.days[d]).map(|d| NAMES[d]).collect();
        format!(
            "{} {:02}:{:02}-{:02}:{:02} {}",
            days.join(","),
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60,
            self.zone_name
        )
    }
}

/// The default schedule and its overrides; a user's own schedule wins over their
/// department's.
#[derive(Clone, Debug)]
pub struct Calendar {
    default: Schedule,
    users: HashMap<String, Schedule>,
    departments: HashMap<String, Schedule>,
}

impl Calendar {
    /// The default schedule and each override, described, for `tracer-hub rules`.
    pub fn listing(&self) -> serde_json::Value {
        let described = |schedules: &HashMap<String, Schedule>| {
            schedules
                .iter()
                .map(|(name, s)| (name.clone(), serde_json::Value::String(s.describe())))
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::json!({
            "default": self.default.describe(),
            "users": described(&self.users),
            "departments": described(&self.departments),
        })
    }

    pub fn resolve(raw: &RawCalendar) -> Self {
        let default = Schedule::resolve(&raw.default_schedule(), None);
        let users = raw
            .users
            .iter()
            .map(|(k, v)| (k.clone(), Schedule::resolve(v, Some(&default))))
            .collect();
        let departments = raw
            .departments
            .iter()
            .map(|(k, v)| (k.clone(), Schedule::resolve(v, Some(&default))))
            .collect();
        Self {
            default,
            users,
            departments,
        }
    }

    pub fn schedule(&self, user: Option<&str>, department: Option<&str>) -> &Schedule {
        user.and_then(|u| self.users.get(u))
            .or_else(|| department.and_then(|d| self.departments.get(d)))
            .unwrap_or(&self.default)
    }
}

fn day_index(day: &str) -> Option<usize> {
    let day = day.to_ascii_lowercase();
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| day.starts_with(d))
}

fn weekday_index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

fn parse_hours(text: &str) -> Option<(u16, u16)> {
    let (start, end) = text.split_once('-')?;
    Some((parse_minute(start.trim())?, parse_minute(end.trim())?))
}

fn parse_minute(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(text: &str) -> i64 {
        crate::when::parse_rfc3339_ns(text).unwrap()
    }

    fn calendar(toml_text: &str) -> Calendar {
        Calendar::resolve(&toml::from_str(toml_text).unwrap())
    }

    #[test]
    fn working_hours_follow_the_zone_and_the_days() {
        let c = calendar("timezone = \"Europe/Berlin\"\nhours = \"08:00-18:00\"\n");
        let s = c.schedule(None, None);
        // 2026-12-02 is a Wednesday; Berlin is UTC+1 in December.
        assert!(s.is_working(ns("2026-12-02T07:30:00Z")));
        assert!(!s.is_working(ns("2026-12-02T06:30:00Z")));
        assert!(!s.is_working(ns("2026-12-02T17:00:00Z")));
        assert!(!s.is_working(ns("2026-12-05T10:00:00Z")), "a Saturday");
    }

    #[test]
    fn overrides_per_user_win_over_departments_and_night_shifts_cross_midnight() {
        let c = calendar(
            "hours = \"09:00-17:00\"\n[users.bob]\nhours = \"22:00-06:00\"\n[departments.ops]\ndays = [\"sat\", \"sun\"]\n",
        );
        let bob = c.schedule(Some("bob"), Some("ops"));
        assert!(bob.is_working(ns("2026-12-02T23:00:00Z")));
        assert!(
            bob.is_working(ns("2026-12-03T05:00:00Z")),
            "Wednesday's shift"
        );
        assert!(!bob.is_working(ns("2026-12-02T12:00:00Z")));
        let ops = c.schedule(Some("carol"), Some("ops"));
        assert!(ops.is_working(ns("2026-12-05T10:00:00Z")));
        assert!(!ops.is_working(ns("2026-12-02T10:00:00Z")));
    }

    #[test]
    fn bad_zones_days_and_hours_are_named() {
        for (text, expected) in [
            ("timezone = \"Mars/Olympus\"", "Mars/Olympus"),
            ("days = [\"funday\"]", "funday"),
            ("hours = \"8-18\"", "8-18"),
        ] {
            let error = toml::from_str::<RawCalendar>(text).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            assert!(error.span().is_some(), "{error}");
        }
    }
}
