//! [`CronExpr`]: a standard five-field cron expression (`minute hour
//! day-of-month month day-of-week`, as crontab(5) writes it) in an IANA
//! time zone, and the next time it fires.
//!
//! The `cron` crate reads six fields (seconds first) and numbers the days
//! of the week 1-7 from Sunday, where crontab numbers them 0-7 from Sunday
//! (0 and 7 both Sunday): `1-5` is Monday to Friday in a crontab and
//! Sunday to Thursday there. Expressions are therefore translated, day
//! numbers becoming names, before the crate sees them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Why an expression or a time zone was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct CronError {
    /// `cron` or `timezone`.
    pub field: &'static str,
    pub message: String,
}

fn cron_error(message: impl Into<String>) -> CronError {
    CronError {
        field: "cron",
        message: message.into(),
    }
}

/// A parsed schedule: when it fires, in which zone's wall clock.
#[derive(Debug, Clone)]
pub struct CronExpr {
    schedule: cron::Schedule,
    zone: Tz,
}

/// Longest expression or time zone name taken (and quoted back in errors).
const MAX_EXPR: usize = 256;

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

const HELP: &str = "write five fields, `minute hour day-of-month month day-of-week` \
                    (e.g. \"0 3 * * *\" every day at 03:00, \"30 6 * * 1-5\" weekdays at \
                    06:30), or @hourly, @daily, @weekly, @monthly, @yearly";

impl CronExpr {
    /// Parses `expr` in `timezone` (an IANA name such as `Europe/Berlin`,
    /// or `UTC`).
    pub fn parse(expr: &str, timezone: &str) -> Result<CronExpr, CronError> {
        if expr.len() > MAX_EXPR || timezone.len() > MAX_EXPR {
            return Err(CronError {
                field: if expr.len() > MAX_EXPR {
                    "cron"
                } else {
                    "timezone"
                },
                message: format!("is longer than {MAX_EXPR} characters"),
            });
        }
        let zone = Tz::from_str(timezone.trim()).map_err(|_| CronError {
            field: "timezone",
            message: format!(
                "{timezone:?} is not a time zone; use an IANA name such as \"UTC\", \
                 \"Europe/Berlin\" or \"America/New_York\""
            ),
        })?;
        let fields = expand_macro(expr.trim())?;
        let [minute, hour, dom, month, dow] = fields;
        if dom != "*" && dom != "?" && dow != "*" && dow != "?" {
            // crontab fires when either matches; the crate when both do.
            return Err(cron_error(format!(
                "{expr:?} restricts both the day of the month and the day of the week, which \
                 crontab reads as either one and other tools as both; restrict one of them"
            )));
        }
        let dow = weekday_names(&dow)?;
        let six = format!("0 {minute} {hour} {dom} {month} {dow}");
        let schedule = cron::Schedule::from_str(&six)
            .map_err(|e| cron_error(format!("{expr:?} is not a cron expression ({e}); {HELP}")))?;
        Ok(CronExpr { schedule, zone })
    }

    /// The first time after `after` that the schedule fires, if any. A
    /// wall-clock time the autumn clock change repeats fires once, at its
    /// first instant; one the spring change skips does not fire that day.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The crate searches from `after`'s local time and answers an
        // ambiguous time with its earlier instant first, which can lie
        // before `after` inside the repeated hour: skip to one after it.
        self.schedule
            .after(&after.with_timezone(&self.zone))
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t > after)
    }
}

/// The five fields of `expr`, macros expanded.
fn expand_macro(expr: &str) -> Result<[String; 5], CronError> {
    let text = match expr.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        other if other.starts_with('@') => {
            return Err(cron_error(format!("{expr:?} is not a known macro; {HELP}")))
        }
        _ => expr.to_string(),
    };
    let fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    fields.try_into().map_err(|f: Vec<String>| {
        cron_error(format!("{expr:?} has {} fields, not 5; {HELP}", f.len()))
    })
}

/// A crontab day-of-week field with its numbers as names (`1-5` →
/// `Mon-Fri`, `0,6` → `Sun,Sat`, `5-7` → `Fri-Sat,Sun`).
fn weekday_names(field: &str) -> Result<String, CronError> {
    let day = |text: &str| -> Result<Option<usize>, CronError> {
        if text.chars().all(|c| c.is_ascii_alphabetic()) {
            return Ok(None);
        }
        match text.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(Some(n % 7)),
            _ => Err(cron_error(format!(
                "day of the week {text:?} is not 0-7 (0 and 7 are Sunday) or a name (Mon)"
            ))),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let with_step = |text: String| match step {
            Some(step) => format!("{text}/{step}"),
            None => text,
        };
        if range == "*" || range == "?" {
            items.push(with_step(range.to_string()));
            continue;
        }
        match range.split_once('-') {
            Some((from, to)) => {
                let ends_sunday = to.trim() == "7";
                // Numbers as crontab reads them (7 is Sunday only as an end).
                if let (Ok(a), Ok(b)) = (from.trim().parse::<u8>(), to.trim().parse::<u8>()) {
                    if a > b {
                        return Err(cron_error(format!(
                            "day-of-week range {range:?} runs backwards; write it from the \
                             earlier day (0 or 7 is Sunday), e.g. \"1-5\" or \"5-7\""
                        )));
                    }
                    if a == 7 {
                        items.push(with_step(DAYS[0].to_string()));
                        continue;
                    }
                }
                match (day(from)?, day(to)?) {
                    (Some(a), Some(_)) if ends_sunday && a > 0 => {
                        if step.is_some() {
                            return Err(cron_error(format!(
                                "day-of-week range {range:?} with a step: write the days as a \
                                 list instead"
                            )));
                        }
                        items.push(format!("{}-Sat,Sun", DAYS[a]));
                    }
                    (Some(_), Some(_)) if ends_sunday => items.push(with_step("Sun-Sat".into())),
                    (Some(a), Some(b)) => items.push(with_step(format!("{}-{}", DAYS[a], DAYS[b]))),
                    _ => items.push(with_step(range.to_string())),
                }
            }
            None => match day(range)? {
                Some(d) => items.push(with_step(DAYS[d].to_string())),
                None => items.push(with_step(range.to_string())),
            },
        }
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    #[test]
    fn fires_at_the_next_matching_minute() {
        let daily = CronExpr::parse("0 3 * * *", "UTC").unwrap();
        assert_eq!(
            daily.next_after(at(2026, 12, 3, 2, 59)),
            Some(at(2026, 12, 3, 3, 0))
        );
        assert_eq!(
            daily.next_after(at(2026, 12, 3, 3, 0)),
            Some(at(2026, 12, 4, 3, 0))
        );
        let every_15 = CronExpr::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            every_15.next_after(at(2026, 12, 3, 10, 1)),
            Some(at(2026, 12, 3, 10, 15))
        );
        let hourly = CronExpr::parse("@hourly", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(at(2026, 12, 3, 10, 1)),
            Some(at(2026, 12, 3, 11, 0))
        );
    }

    #[test]
    fn weekdays_are_numbered_as_crontab_numbers_them() {
        // 2026-12-05 is a Saturday.
        let weekdays = CronExpr::parse("30 6 * * 1-5", "UTC").unwrap();
        assert_eq!(
            weekdays.next_after(at(2026, 12, 5, 0, 0)),
            Some(at(2026, 12, 7, 6, 30))
        );
        let sunday = CronExpr::parse("0 0 * * 0", "UTC").unwrap();
        assert_eq!(
            sunday.next_after(at(2026, 12, 5, 0, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        let seven = CronExpr::parse("0 0 * * 7", "UTC").unwrap();
        assert_eq!(
            seven.next_after(at(2026, 12, 5, 0, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        let weekend = CronExpr::parse("0 0 * * 6-7", "UTC").unwrap();
        assert_eq!(
            weekend.next_after(at(2026, 12, 5, 1, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        let sunday_range = CronExpr::parse("0 0 * * 7-7", "UTC").unwrap();
        assert_eq!(
            sunday_range.next_after(at(2026, 12, 5, 0, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        let named = CronExpr::parse("0 0 * * Mon,Wed", "UTC").unwrap();
        assert_eq!(
            named.next_after(at(2026, 12, 5, 0, 0)),
            Some(at(2026, 12, 7, 0, 0))
        );
    }

    #[test]
    fn the_time_zone_is_the_wall_clock() {
        // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
        let berlin = CronExpr::parse("0 3 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            berlin.next_after(at(2026, 12, 3, 0, 0)),
            Some(at(2026, 12, 3, 2, 0))
        );
        assert_eq!(
            berlin.next_after(at(2026, 7, 1, 0, 0)),
            Some(at(2026, 7, 1, 1, 0))
        );
    }

    #[test]
    fn daylight_saving_changes_neither_panic_nor_fire_twice() {
        // Berlin skips 02:00-03:00 on 2026-03-29 and repeats 02:00-03:00 on
        // 2026-10-25.
        let at_230 = CronExpr::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let spring = at_230.next_after(at(2026, 3, 28, 12, 0)).unwrap();
        assert!(spring > at(2026, 3, 28, 12, 0), "{spring}");
        let after_spring = at_230.next_after(spring).unwrap();
        assert!(after_spring > spring, "{after_spring}");
        let autumn = at_230.next_after(at(2026, 10, 24, 12, 0)).unwrap();
        let next = at_230.next_after(autumn).unwrap();
        assert!(
            next - autumn >= chrono::Duration::hours(23),
            "fired twice in the repeated hour: {autumn} then {next}"
        );
        // Asked from inside the repeated hour (01:10 UTC is the second
        // 02:10 in Berlin), the answer is still after the question.
        let inside = at(2026, 10, 25, 1, 10);
        let answer = at_230.next_after(inside).unwrap();
        assert!(answer > inside, "{answer} is not after {inside}");
        let quarter = CronExpr::parse("*/15 * * * *", "Europe/Berlin").unwrap();
        assert!(quarter.next_after(inside).unwrap() > inside);
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            ("0 3 * *", "UTC", "cron", "4 fields"),
            ("61 3 * * *", "UTC", "cron", "not a cron expression"),
            ("0 3 * * 8", "UTC", "cron", "not 0-7"),
            ("0 3 * * 7-3", "UTC", "cron", "runs backwards"),
            ("0 3 * * 5-1", "UTC", "cron", "runs backwards"),
            ("0 3 1 * 1", "UTC", "cron", "both the day of the month"),
            ("@often", "UTC", "cron", "not a known macro"),
            ("0 3 * * *", "Mars/Olympus", "timezone", "not a time zone"),
        ];
        for (expr, zone, field, text) in cases {
            let err = CronExpr::parse(expr, zone).unwrap_err();
            assert_eq!(err.field, field, "{expr} {zone}: {err}");
            assert!(err.to_string().contains(text), "{expr} {zone}: {err}");
        }
    }

    /// Expressions that are legal-looking but degenerate end quickly, with
    /// an error or an answer, never a hang or a panic.
    #[test]
    fn degenerate_expressions_end() {
        let now = Utc::now();
        for expr in [
            "*/0 * * * *",
            "0-99999999999 * * * *",
            "5-1 * * * *",
            "0 0 31 2 *",
            "0 0 30 2 *",
            "*/1000 * * * *",
            "0 0 * * */9",
            "0 0 L * *",
            "0 0 ? * ?",
            ",,, * * * *",
        ] {
            if let Ok(parsed) = CronExpr::parse(expr, "UTC") {
                let _ = parsed.next_after(now);
            }
        }
    }
}
