//! Stateful detections: thresholds, first-seen baselines, maintenance windows.
//!
//! Declared under an `auditflow:` key of a rule, which Falco ignores (so the
//! same file still loads in Falco, as a plain stateless rule):
//!
//! ```yaml
//! - rule: Failed Authentication Burst
//!   condition: kevt and ka.response.code in (401, 403)
//!   output: Repeated failed requests (user=%ka.user.name ip=%ka.sourceips)
//!   priority: WARNING
//!   source: k8s_audit
//!   auditflow:
//!     threshold: {count: 5, window: 1m, group_by: [ka.user.name]}
//! ```
//!
//! - `threshold: {count, window, group_by}`: alerts when `count` matching events
//!   of one group (the values of the `group_by` fields) fall within `window`;
//!   the group then starts counting again.
//! - `first_seen: {key, learning_period}`: alerts the first time a combination
//!   of the `key` fields' values matches, once the learning period (counted
//!   from the earliest event time the rule matched) is over; during it,
//!   combinations are only recorded.
//! - `outside_windows: {timezone, windows}`: the rule matches only outside
//!   every window (`"Sat 02:00-04:00"`, `"Mon-Fri 22:00-06:00"`, `"daily 03:00-04:00"`),
//!   read in `timezone` (an IANA name, default UTC). Combines with the other two.
//!
//! All of them use the event's own time (`stageTimestamp`, else
//! `requestReceivedTimestamp`), never the clock, so a replay detects the same.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditflow_core::condition::{EvalContext, FieldExtractor, FieldResolver, StandardFields};
use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// A rule's stateful settings (its `auditflow:` key).
#[derive(Debug)]
pub struct StatefulSpec {
    /// Maintenance windows during which the rule does not match.
    pub windows: Option<MaintenanceWindows>,
    /// A threshold or a first-seen baseline.
    pub kind: Option<StatefulKind>,
}

/// What a stateful rule counts or remembers.
#[derive(Debug)]
pub enum StatefulKind {
    /// Alert when `count` matches of one group fall within `window`.
    Threshold {
        /// How many matches.
        count: usize,
        /// Within how long.
        window: Duration,
        /// The fields whose values make the group.
        group_by: KeyFields,
    },
    /// Alert the first time a key is seen, after the learning period.
    FirstSeen {
        /// The fields whose values make the key.
        key: KeyFields,
        /// How long (from the rule's first match) keys are only learned.
        learning_period: Duration,
    },
}

/// Fields whose values, joined, make a group or key.
pub struct KeyFields(Vec<(String, Box<dyn FieldExtractor>)>);

impl std::fmt::Debug for KeyFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl KeyFields {
    fn parse(value: Option<&Value>, what: &str) -> Result<KeyFields, String> {
        let names: Vec<String> = match value {
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("`{what}` must list field names"))?,
            Some(Value::String(name)) => vec![name.clone()],
            _ => {
                return Err(format!(
                    "`{what}` must list field names, as in [ka.user.name]"
                ))
            }
        };
        if names.is_empty() {
            return Err(format!("`{what}` needs at least one field"));
        }
        names
            .into_iter()
            .map(|name| {
                let (field, arg) = split_field(&name);
                StandardFields
                    .resolve(field, arg)
                    .map(|extractor| (name.clone(), extractor))
                    .map_err(|_| format!("`{what}`: unknown field `{name}`"))
            })
            .collect::<Result<_, _>>()
            .map(KeyFields)
    }

    /// The key of an event: the fields' values joined (`<NA>` for missing ones).
    pub fn key(&self, ctx: &EvalContext<'_>) -> String {
        self.0
            .iter()
            .map(|(_, field)| field.extract_in(ctx).to_string())
            .collect::<Vec<_>>()
            .join(KEY_SEPARATOR)
    }
}

/// Separates field values in a key (a character no field value holds in practice).
const KEY_SEPARATOR: &str = "\u{1f}";

fn split_field(name: &str) -> (&str, Option<&str>) {
    match name.split_once('[') {
        Some((field, rest)) => (field, rest.strip_suffix(']')),
        None => (name, None),
    }
}

impl StatefulSpec {
    /// Parses a rule's `auditflow:` value.
    pub fn parse(value: &Value) -> Result<StatefulSpec, String> {
        let Value::Mapping(map) = value else {
            return Err(
                "expected a mapping with `threshold`, `first_seen` or `outside_windows`".into(),
            );
        };
        let mut spec = StatefulSpec {
            windows: None,
            kind: None,
        };
        for (key, value) in map {
            match key.as_str() {
                Some("threshold") => spec.set_kind(parse_threshold(value)?)?,
                Some("first_seen") => spec.set_kind(parse_first_seen(value)?)?,
                Some("outside_windows") => spec.windows = Some(MaintenanceWindows::parse(value)?),
                _ => {
                    return Err(format!(
                        "unknown key `{}`: expected `threshold`, `first_seen` or `outside_windows`",
                        key.as_str().unwrap_or("?")
                    ))
                }
            }
        }
        Ok(spec)
    }

    fn set_kind(&mut self, kind: StatefulKind) -> Result<(), String> {
        if self.kind.is_some() {
            return Err("a rule takes either `threshold` or `first_seen`, not both".into());
        }
        self.kind = Some(kind);
        Ok(())
    }
}

fn mapping<'v>(value: &'v Value, what: &str) -> Result<&'v serde_yaml::Mapping, String> {
    value
        .as_mapping()
        .ok_or_else(|| format!("`{what}` must be a mapping"))
}

fn duration(value: Option<&Value>, what: &str) -> Result<Duration, String> {
    let text = value
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{what}` needs a duration such as `1m` or `24h`"))?;
    humantime::parse_duration(text).map_err(|e| format!("`{what}`: `{text}`: {e}"))
}

fn parse_threshold(value: &Value) -> Result<StatefulKind, String> {
    let map = mapping(value, "threshold")?;
    let count = map
        .get("count")
        .and_then(Value::as_u64)
        .filter(|count| *count >= 1)
        .ok_or("`threshold.count` must be a whole number of at least 1")?;
    Ok(StatefulKind::Threshold {
        count: usize::try_from(count).map_err(|_| "`threshold.count` is too large")?,
        window: duration(map.get("window"), "threshold.window")?,
        group_by: KeyFields::parse(map.get("group_by"), "threshold.group_by")?,
    })
}

fn parse_first_seen(value: &Value) -> Result<StatefulKind, String> {
    let map = mapping(value, "first_seen")?;
    let learning_period = match map.get("learning_period") {
        None => Duration::ZERO,
        some => duration(some, "first_seen.learning_period")?,
    };
    Ok(StatefulKind::FirstSeen {
        key: KeyFields::parse(map.get("key"), "first_seen.key")?,
        learning_period,
    })
}

/// Maintenance windows in a time zone.
#[derive(Debug)]
pub struct MaintenanceWindows {
    timezone: Tz,
    windows: Vec<Window>,
}

/// One weekly window: on some days, from a minute of the day to another (possibly the next day).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    days: [bool; 7],
    start: u32,
    end: u32,
}

impl MaintenanceWindows {
    fn parse(value: &Value) -> Result<MaintenanceWindows, String> {
        let map = mapping(value, "outside_windows")?;
        let timezone = match map.get("timezone").and_then(Value::as_str) {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                format!("`outside_windows.timezone`: unknown time zone `{name}` (use an IANA name such as Europe/Berlin)")
            })?,
        };
        let windows = map
            .get("windows")
            .and_then(Value::as_sequence)
            .ok_or("`outside_windows.windows` must list windows such as \"Sat 02:00-04:00\"")?
            .iter()
            .map(|window| {
                window
                    .as_str()
                    .ok_or_else(|| "a window is text such as \"Sat 02:00-04:00\"".to_string())
                    .and_then(Window::parse)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MaintenanceWindows { timezone, windows })
    }

    /// Whether `time` falls in one of the windows.
    pub fn contains(&self, time: DateTime<Utc>) -> bool {
        let local = time.with_timezone(&self.timezone);
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = local.hour() * 60 + local.minute();
        self.windows
            .iter()
            .any(|window| window.contains(day, minute))
    }
}

impl Window {
    /// Parses `DAYS HH:MM-HH:MM`; DAYS is `Mon`, `Mon-Fri`, `Sat,Sun` or `daily`.
    fn parse(text: &str) -> Result<Window, String> {
        let bad = || {
            format!("window `{text}`: expected DAYS HH:MM-HH:MM, as in \"Sat 02:00-04:00\" or \"Mon-Fri 22:00-06:00\"")
        };
        let (days, times) = text.trim().split_once(' ').ok_or_else(bad)?;
        let (start, end) = times.trim().split_once('-').ok_or_else(bad)?;
        Ok(Window {
            days: parse_days(days).ok_or_else(bad)?,
            start: parse_minute(start).ok_or_else(bad)?,
            end: parse_minute(end).ok_or_else(bad)?,
        })
    }

    fn contains(&self, day: usize, minute: u32) -> bool {
        let on = |day: usize| self.days.get(day % 7).copied().unwrap_or(false);
        if self.start <= self.end {
            on(day) && minute >= self.start && minute < self.end
        } else {
            (on(day) && minute >= self.start) || (on(day + 6) && minute < self.end)
        }
    }
}

fn parse_days(text: &str) -> Option<[bool; 7]> {
    let mut days = [false; 7];
    if matches!(text.to_ascii_lowercase().as_str(), "daily" | "*") {
        return Some([true; 7]);
    }
    for part in text.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let first = first.trim().parse::<Weekday>().ok()?.num_days_from_monday() as usize;
        let last = last.trim().parse::<Weekday>().ok()?.num_days_from_monday() as usize;
        let span = (last + 7 - first) % 7;
        for offset in 0..=span {
            *days.get_mut((first + offset) % 7)? = true;
        }
    }
    Some(days)
}

fn parse_minute(text: &str) -> Option<u32> {
    let (hour, minute) = text.trim().split_once(':')?;
    let (hour, minute) = (hour.parse::<u32>().ok()?, minute.parse::<u32>().ok()?);
    (hour <= 24 && minute < 60 && hour * 60 + minute <= 24 * 60).then_some(hour * 60 + minute)
}

/// What a stateful check adds to the alert it lets through.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No alert (yet).
    Quiet,
    /// Alert; the pairs go to the alert's `output_fields`.
    Alert(Vec<(&'static str, serde_json::Value)>),
}

/// The state of every stateful rule of one detect transform, bounded and persistable.
#[derive(Debug, Default)]
pub struct DetectState {
    thresholds: HashMap<(Arc<str>, String), VecDeque<i64>>,
    seen: HashMap<(Arc<str>, String), i64>,
    learning_started: HashMap<Arc<str>, i64>,
    max_keys: usize,
    evicted: u64,
    dirty: bool,
}

/// The state as written to disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    thresholds: Vec<(String, String, Vec<i64>)>,
    seen: Vec<(String, String, i64)>,
    learning_started: Vec<(String, i64)>,
}

const STATE_VERSION: u32 = 1;

impl DetectState {
    /// Empty state holding at most `max_keys` groups and keys.
    pub fn new(max_keys: usize) -> DetectState {
        DetectState {
            max_keys: max_keys.max(1),
            ..DetectState::default()
        }
    }

    /// How many groups and keys have been evicted to stay under the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// How many groups and keys are held.
    pub fn len(&self) -> usize {
        self.thresholds.len() + self.seen.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a stateful rule to an event its condition matched at `time` (nanoseconds).
    pub fn check(
        &mut self,
        rule: &Arc<str>,
        kind: &StatefulKind,
        ctx: &EvalContext<'_>,
        time: i64,
    ) -> Verdict {
        self.dirty = true;
        let verdict = match kind {
            StatefulKind::Threshold {
                count,
                window,
                group_by,
            } => self.threshold(rule, group_by.key(ctx), *count, *window, time),
            StatefulKind::FirstSeen {
                key,
                learning_period,
            } => self.first_seen(rule, key.key(ctx), *learning_period, time),
        };
        self.enforce_bound();
        verdict
    }

    fn threshold(
        &mut self,
        rule: &Arc<str>,
        group: String,
        count: usize,
        window: Duration,
        time: i64,
    ) -> Verdict {
        let window = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
        let times = self.thresholds.entry((rule.clone(), group)).or_default();
        while times
            .front()
            .is_some_and(|first| *first <= time.saturating_sub(window))
        {
            times.pop_front();
        }
        times.push_back(time);
        if times.len() < count {
            return Verdict::Quiet;
        }
        let reached = times.len();
        times.clear();
        Verdict::Alert(vec![("auditflow.count", reached.into())])
    }

    fn first_seen(
        &mut self,
        rule: &Arc<str>,
        key: String,
        learning: Duration,
        time: i64,
    ) -> Verdict {
        let learning = i64::try_from(learning.as_nanos()).unwrap_or(i64::MAX);
        // The earliest event time seen, so that files read side by side (the
        // rotated backups of a log) do not start learning late.
        let started = self.learning_started.entry(rule.clone()).or_insert(time);
        *started = (*started).min(time);
        let started = *started;
        let entry = (rule.clone(), key);
        if let Some(last) = self.seen.get_mut(&entry) {
            *last = (*last).max(time);
            return Verdict::Quiet;
        }
        let key_text = entry.1.replace(KEY_SEPARATOR, ",");
        self.seen.insert(entry, time);
        if time < started.saturating_add(learning) {
            return Verdict::Quiet;
        }
        Verdict::Alert(vec![("auditflow.first_seen", key_text.into())])
    }

    /// Evicts the least recently active tenth when over the bound.
    fn enforce_bound(&mut self) {
        if self.len() <= self.max_keys {
            return;
        }
        let mut activity: Vec<i64> = self
            .thresholds
            .values()
            .map(|times| times.back().copied().unwrap_or(i64::MIN))
            .chain(self.seen.values().copied())
            .collect();
        let target = self.max_keys - self.max_keys / 10;
        let remove = activity.len().saturating_sub(target);
        if remove == 0 {
            return;
        }
        let cutoff = *activity.select_nth_unstable(remove - 1).1;
        let before = self.len();
        self.thresholds
            .retain(|_, times| times.back().copied().unwrap_or(i64::MIN) > cutoff);
        self.seen.retain(|_, last| *last > cutoff);
        self.evicted += (before - self.len()) as u64;
    }

    /// Loads the state saved at `path`; empty when there is none.
    pub fn load(path: &Path, max_keys: usize) -> anyhow::Result<DetectState> {
        let mut state = DetectState::new(max_keys);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(state),
            Err(error) => anyhow::bail!(
                "cannot read the detection state {}: {error}",
                path.display()
            ),
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "the detection state {} is damaged ({error}); move it away to start afresh",
                path.display()
            )
        })?;
        if file.version != STATE_VERSION {
            anyhow::bail!(
                "the detection state {} has version {}, expected {STATE_VERSION}",
                path.display(),
                file.version
            );
        }
        for (rule, group, times) in file.thresholds {
            state.thresholds.insert((rule.into(), group), times.into());
        }
        for (rule, key, last) in file.seen {
            state.seen.insert((rule.into(), key), last);
        }
        for (rule, started) in file.learning_started {
            state.learning_started.insert(rule.into(), started);
        }
        state.enforce_bound();
        Ok(state)
    }

    /// Writes the state to `path` atomically (a temporary file renamed over it), if it changed.
    pub fn save(&mut self, path: &Path) -> anyhow::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let file = StateFile {
            version: STATE_VERSION,
            thresholds: self
                .thresholds
                .iter()
                .filter(|(_, times)| !times.is_empty())
                .map(|((rule, group), times)| {
                    (
                        rule.to_string(),
                        group.clone(),
                        times.iter().copied().collect(),
                    )
                })
                .collect(),
            seen: self
                .seen
                .iter()
                .map(|((rule, key), last)| (rule.to_string(), key.clone(), *last))
                .collect(),
            learning_started: self
                .learning_started
                .iter()
                .map(|(rule, started)| (rule.to_string(), *started))
                .collect(),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = temporary_path(path);
        std::fs::write(&temporary, serde_json::to_vec(&file)?)?;
        std::fs::rename(&temporary, path)?;
        self.dirty = false;
        Ok(())
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_read_days_times_and_zones() {
        let value: Value = serde_yaml::from_str(
            "{timezone: Europe/Berlin, windows: [\"Sat 02:00-04:00\", \"Mon-Fri 22:00-06:00\"]}",
        )
        .unwrap();
        let windows = MaintenanceWindows::parse(&value).unwrap();
        // Saturday 2026-11-28 03:00 in Berlin is 02:00 UTC.
        assert!(windows.contains(at("2026-11-28T02:00:00Z")));
        // Sunday 04:30 in Berlin: in no window.
        assert!(!windows.contains(at("2026-11-29T03:30:00Z")));
        // Tuesday 23:00 Berlin, and Wednesday 05:00 Berlin (the window of Tuesday night).
        assert!(windows.contains(at("2026-11-24T22:00:00Z")));
        assert!(windows.contains(at("2026-11-25T04:00:00Z")));
        // Saturday 05:30 Berlin: Friday night's window ended at 06:00 — inside.
        assert!(windows.contains(at("2026-11-28T04:30:00Z")));
        // Sunday 05:30 Berlin: Saturday is not Mon-Fri.
        assert!(!windows.contains(at("2026-11-29T04:30:00Z")));
        assert!(Window::parse("Funday 01:00-02:00").is_err());
        assert!(Window::parse("Sat 25:00-26:00").is_err());
    }

    #[test]
    fn the_bound_evicts_the_least_recent_and_counts() {
        let mut state = DetectState::new(10);
        let rule: Arc<str> = "r".into();
        for i in 0..25 {
            state.first_seen(&rule, format!("k{i}"), Duration::ZERO, i);
            state.enforce_bound();
        }
        assert!(state.len() <= 10, "{}", state.len());
        assert!(state.evicted() >= 15);
        assert!(state.seen.contains_key(&(rule.clone(), "k24".to_string())));
        assert!(!state.seen.contains_key(&(rule, "k0".to_string())));
    }
}
