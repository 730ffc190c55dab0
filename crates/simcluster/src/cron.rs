//! CronJob schedules as Kubernetes reads them (robfig/cron's standard parser): five fields — minute, hour, day of
//! month, month, day of week — each `*`, a number or name, a range `a-b`, a step `*/n` or `a-b/n`, or a list of
//! those; or a descriptor (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`). When
//! both day fields are restricted, a day matching either runs, as cron does.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Whether the day-of-month and day-of-week fields were `*` (then the other alone decides).
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; max as usize + 1];
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step of range should be a positive number: {part}"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `n/step` runs from n to the end, as robfig/cron reads it.
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
        }
        let mut v = lo;
        while v <= hi {
            set[v as usize] = true;
            v += step;
        }
    }
    // Sunday may be written 7.
    if names.len() == 7 && set[7] {
        set[0] = true;
    }
    Ok((set, text == "*" || text == "?"))
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {text}",
                fields.len()
            ));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[])?;
        let (hours, _) = field(fields[1], 0, 23, &[])?;
        let (days, any_day) = field(fields[2], 1, 31, &[])?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS)?;
        let (weekdays, any_weekday) = field(fields[4], 0, 7, &WEEKDAYS)?;
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day,
            any_weekday,
        })
    }

    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().num_days_from_sunday() as usize];
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first time after `after` (to the minute) the schedule fires; `None` if none within five years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let end = after + Duration::days(366 * 5);
        while t <= end {
            if !self.months[t.month() as usize] || !self.day_matches(&t) {
                t = (t + Duration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if !self.hours[t.hour() as usize] {
                t = (t + Duration::hours(1)).with_minute(0)?;
                continue;
            }
            if self.minutes[t.minute() as usize] {
                return Some(t);
            }
            t += Duration::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn schedules_fire_when_cron_fires_them() {
        let cases = [
            (
                "*/5 * * * *",
                "2026-12-06T10:02:30Z",
                "2026-12-06T10:05:00Z",
            ),
            ("* * * * *", "2026-12-06T10:02:30Z", "2026-12-06T10:03:00Z"),
            ("0 * * * *", "2026-12-06T10:02:00Z", "2026-12-06T11:00:00Z"),
            ("@hourly", "2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z"),
            ("30 2 * * *", "2026-12-06T10:00:00Z", "2026-12-07T02:30:00Z"),
            ("@daily", "2026-12-06T10:00:00Z", "2026-12-07T00:00:00Z"),
            // 2026-12-06 is a Sunday.
            (
                "0 9 * * MON-FRI",
                "2026-12-06T10:00:00Z",
                "2026-12-07T09:00:00Z",
            ),
            ("0 0 * * 7", "2026-12-06T10:00:00Z", "2026-12-13T00:00:00Z"),
            (
                "0 0 1 JAN *",
                "2026-12-06T10:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "15,45 * * * *",
                "2026-12-06T10:20:00Z",
                "2026-12-06T10:45:00Z",
            ),
            (
                "10-20/5 * * * *",
                "2026-12-06T10:16:00Z",
                "2026-12-06T10:20:00Z",
            ),
            // Both day fields restricted: either matches (the 1st, or a Monday).
            (
                "0 0 1 * MON",
                "2026-12-06T10:00:00Z",
                "2026-12-07T00:00:00Z",
            ),
        ];
        for (schedule, after, want) in cases {
            let s = Schedule::parse(schedule).unwrap_or_else(|e| panic!("{schedule}: {e}"));
            assert_eq!(
                s.next_after(at(after)),
                Some(at(want)),
                "{schedule} after {after}"
            );
        }
        for bad in [
            "* * * *",
            "61 * * * *",
            "*/0 * * * *",
            "@every 1m",
            "x * * * *",
            "5-2 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
