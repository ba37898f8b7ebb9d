//! Object keys as Firehose writes them: `<prefix><stream>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid><ext>`.
//! Pure: the instant, the zone and the random parts are passed in.
//!
//! A prefix without `!{...}` expressions gets `yyyy/MM/dd/HH/` appended, by plain
//! concatenation (`logs` gives `logs2026/...`). A prefix with expressions is evaluated as
//! written: `!{timestamp:<Java DateTimeFormatter pattern>}`, `!{firehose:random-string}`
//! (11 characters, new for each occurrence), `!{partitionKeyFromQuery:k}` (a dynamic
//! partition's key value) and, in an ErrorOutputPrefix only, `!{firehose:error-output-type}`.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// One piece of a parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Timestamp(Vec<Field>),
    RandomString,
    ErrorOutputType,
    /// `!{partitionKeyFromQuery:name}` (or `FromLambda`): a dynamic partition's key.
    PartitionKey {
        from_lambda: bool,
        name: String,
    },
}

/// One element of a Java DateTimeFormatter pattern: a letter repeated `width` times, or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Letter(char, usize),
    Text(String),
}

/// Why a prefix is refused, as the text after "Ths supplied prefix(es) do not satisfy ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixError(pub String);

/// The letters of DateTimeFormatter firelake evaluates.
const LETTERS: &str = "yYMLdDHhkKmsSaEewu";

/// Parses a prefix into literal text and expressions.
pub fn parse_prefix(prefix: &str) -> Result<Vec<Part>, PrefixError> {
    let mut parts = Vec::new();
    let mut rest = prefix;
    while let Some(start) = rest.find("!{") {
        if start > 0 {
            parts.push(Part::Literal(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| PrefixError(format!("Invalid expression: unterminated \"!{{\" in {prefix:?}")))?;
        let expression = &after[..end];
        let (namespace, value) = expression
            .split_once(':')
            .ok_or_else(|| PrefixError(format!("Invalid expression \"!{{{expression}}}\": expected namespace:value")))?;
        parts.push(match (namespace.trim(), value.trim()) {
            ("timestamp", pattern) => Part::Timestamp(parse_pattern(pattern)?),
            ("firehose", "random-string") => Part::RandomString,
            ("firehose", "error-output-type") => Part::ErrorOutputType,
            (source @ ("partitionKeyFromQuery" | "partitionKeyFromLambda"), name) if !name.is_empty() => {
                Part::PartitionKey { from_lambda: source == "partitionKeyFromLambda", name: name.to_owned() }
            }
            _ => return Err(PrefixError(format!("Invalid expression \"!{{{expression}}}\": unknown namespace or value"))),
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(parts)
}

/// Parses a Java DateTimeFormatter pattern (`yyyy/MM/dd`, `'year='yyyy`, ...).
pub fn parse_pattern(pattern: &str) -> Result<Vec<Field>, PrefixError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted text; '' is a literal quote.
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(PrefixError(format!("Invalid timestamp pattern {pattern:?}: unterminated quote"))),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        text.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            if text.is_empty() {
                text.push('\'');
            }
            fields.push(Field::Text(text));
        } else if c.is_ascii_alphabetic() {
            if !LETTERS.contains(c) {
                return Err(PrefixError(format!("Invalid timestamp pattern {pattern:?}: unsupported letter '{c}'")));
            }
            let mut width = 1;
            while chars.get(i + width) == Some(&c) {
                width += 1;
            }
            fields.push(Field::Letter(c, width));
            i += width;
        } else if matches!(c, '[' | ']' | '{' | '}' | '#') {
            return Err(PrefixError(format!("Invalid timestamp pattern {pattern:?}: reserved character '{c}'")));
        } else {
            fields.push(Field::Text(c.to_string()));
            i += 1;
        }
    }
    Ok(fields)
}

/// Whether a parsed prefix holds any expression.
pub fn has_expressions(parts: &[Part]) -> bool {
    parts.iter().any(|p| !matches!(p, Part::Literal(_)))
}

fn pad(value: i64, width: usize) -> String {
    format!("{value:0width$}")
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Formats `at` with a parsed pattern, as java.time would.
pub fn format_fields<T: TimeZone>(fields: &[Field], at: &DateTime<T>) -> String {
    let mut out = String::new();
    for field in fields {
        match field {
            Field::Text(text) => out.push_str(text),
            Field::Letter(c, w) => {
                let w = *w;
                let text = match c {
                    'y' | 'u' | 'Y' => {
                        let year = if *c == 'Y' { at.iso_week().year() } else { at.year() } as i64;
                        if w == 2 { pad(year.rem_euclid(100), 2) } else { pad(year, w) }
                    }
                    'M' | 'L' => match w {
                        1 | 2 => pad(at.month() as i64, w),
                        3 => MONTHS[at.month0() as usize][..3].to_owned(),
                        _ => MONTHS[at.month0() as usize].to_owned(),
                    },
                    'd' => pad(at.day() as i64, w),
                    'D' => pad(at.ordinal() as i64, w),
                    'H' => pad(at.hour() as i64, w),
                    'k' => pad(if at.hour() == 0 { 24 } else { at.hour() as i64 }, w),
                    'h' => pad(
                        match at.hour() % 12 {
                            0 => 12,
                            h => h as i64,
                        },
                        w,
                    ),
                    'K' => pad((at.hour() % 12) as i64, w),
                    'm' => pad(at.minute() as i64, w),
                    's' => pad(at.second() as i64, w),
                    'S' => {
                        let nanos = format!("{:09}", at.nanosecond() % 1_000_000_000);
                        if w <= 9 { nanos[..w].to_owned() } else { format!("{nanos}{}", "0".repeat(w - 9)) }
                    }
                    'a' => (if at.hour() < 12 { "AM" } else { "PM" }).to_owned(),
                    'E' => {
                        let day = DAYS[at.weekday().num_days_from_monday() as usize];
                        if w <= 3 { day[..3].to_owned() } else { day.to_owned() }
                    }
                    'e' => pad(at.weekday().number_from_sunday() as i64, w),
                    'w' => pad(at.iso_week().week() as i64, w),
                    _ => String::new(),
                };
                out.push_str(&text);
            }
        }
    }
    out
}

/// The parts of an object key that are not the prefix.
pub struct KeyInputs<'a> {
    pub stream: &'a str,
    pub version: u64,
    /// Arrival of the oldest record in the object, in milliseconds since the epoch.
    pub oldest_arrival_ms: i64,
    /// CustomTimeZone; `None` is UTC.
    pub zone: Option<Tz>,
    pub uuid: &'a str,
    pub extension: &'a str,
    /// The dynamic partition: key names and their values, in the same order.
    pub partition: (&'a [String], &'a [String]),
}

/// The object key for `prefix` (already parsed). `random` gives each `random-string`.
pub fn object_key(parts: &[Part], inputs: &KeyInputs<'_>, error_output_type: Option<&str>, mut random: impl FnMut() -> String) -> String {
    let utc = Utc.timestamp_millis_opt(inputs.oldest_arrival_ms).single().unwrap_or_default();
    let at = match inputs.zone {
        Some(zone) => utc.with_timezone(&zone).fixed_offset(),
        None => utc.fixed_offset(),
    };
    let mut key = String::new();
    for part in parts {
        match part {
            Part::Literal(text) => key.push_str(text),
            Part::Timestamp(fields) => key.push_str(&format_fields(fields, &at)),
            Part::RandomString => key.push_str(&random()),
            Part::ErrorOutputType => key.push_str(error_output_type.unwrap_or("processing-failed")),
            Part::PartitionKey { name, .. } => {
                let (names, values) = inputs.partition;
                if let Some(value) = names.iter().position(|n| n == name).and_then(|i| values.get(i)) {
                    key.push_str(value);
                }
            }
        }
    }
    if !has_expressions(parts) {
        key.push_str(&at.format("%Y/%m/%d/%H/").to_string());
    }
    key.push_str(&format!("{}-{}-{}-{}{}", inputs.stream, inputs.version, at.format("%Y-%m-%d-%H-%M-%S"), inputs.uuid, inputs.extension));
    key
}

/// `!{firehose:random-string}`: 11 characters, like the start of a lower-case UUID.
pub fn random_string() -> String {
    uuid::Uuid::new_v4().to_string()[..11].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "303e3203-e31b-4c6a-bbcd-e2e801cce9cb";
    // 2020-11-06T04:57:58.123Z
    const AT: i64 = 1_604_638_678_123;

    #[track_caller]
    fn check(prefix: &str, zone: Option<Tz>, version: u64, extension: &str, expected: &str) {
        let parts = parse_prefix(prefix).unwrap();
        let names = ["vin".to_owned()];
        let values = ["WVW1".to_owned()];
        let inputs =
            KeyInputs { stream: "test-stream", version, oldest_arrival_ms: AT, zone, uuid: UUID, extension, partition: (&names, &values) };
        let mut n = 0;
        let key = object_key(&parts, &inputs, None, || {
            n += 1;
            format!("rand{n:07}")
        });
        assert_eq!(key, expected);
    }

    #[test]
    fn default_prefix_is_the_utc_hour() {
        check("", None, 1, "", "2020/11/06/04/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb");
    }

    #[test]
    fn static_prefix_is_concatenated_without_a_slash() {
        check("logs", None, 1, "", "logs2020/11/06/04/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb");
        check("logs/", None, 1, "", "logs/2020/11/06/04/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb");
        check("/a//", None, 1, "", "/a//2020/11/06/04/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb");
    }

    #[test]
    fn version_and_extension_are_in_the_name() {
        check("", None, 3, ".gz", "2020/11/06/04/test-stream-3-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb.gz");
        check(
            "",
            None,
            2,
            ".custom.log",
            "2020/11/06/04/test-stream-2-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb.custom.log",
        );
    }

    #[test]
    fn expressions_replace_the_default_time_path() {
        check(
            "year=!{timestamp:yyyy}/month=!{timestamp:MM}/",
            None,
            1,
            "",
            "year=2020/month=11/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb",
        );
        check(
            "!{timestamp:'year='yyyy'/doy='DDD}/",
            None,
            1,
            "",
            "year=2020/doy=311/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb",
        );
        check(
            "r/!{firehose:random-string}/!{firehose:random-string}/",
            None,
            1,
            "",
            "r/rand0000001/rand0000002/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb",
        );
    }

    #[test]
    fn partition_keys_take_their_values() {
        check(
            "vin=!{partitionKeyFromQuery:vin}/y=!{timestamp:yyyy}/",
            None,
            1,
            ".gz",
            "vin=WVW1/y=2020/test-stream-1-2020-11-06-04-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb.gz",
        );
    }

    #[test]
    fn custom_time_zone_applies_to_prefix_and_suffix() {
        check(
            "",
            Some(chrono_tz::Asia::Tokyo),
            1,
            "",
            "2020/11/06/13/test-stream-1-2020-11-06-13-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb",
        );
        check(
            "!{timestamp:HH}/",
            Some(chrono_tz::America::New_York),
            1,
            "",
            "23/test-stream-1-2020-11-05-23-57-58-303e3203-e31b-4c6a-bbcd-e2e801cce9cb",
        );
    }

    #[track_caller]
    fn check_pattern(pattern: &str, expected: &str) {
        let at = Utc.timestamp_millis_opt(AT).unwrap();
        assert_eq!(format_fields(&parse_pattern(pattern).unwrap(), &at), expected);
    }

    #[test]
    fn java_pattern_letters() {
        check_pattern("yyyy-MM-dd HH:mm:ss.SSS", "2020-11-06 04:57:58.123");
        check_pattern("yy/M/d/H", "20/11/6/4");
        check_pattern("MMM MMMM EEE EEEE", "Nov November Fri Friday");
        check_pattern("hh a", "04 AM");
        check_pattern("D DDD", "311 311");
        check_pattern("'it''s' yyyy", "it's 2020");
        check_pattern("''", "'");
        // Week-based year differs from the year around New Year: 2021-01-01 is in week 53 of 2020.
        let new_year = Utc.with_ymd_and_hms(2021, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(format_fields(&parse_pattern("YYYY yyyy").unwrap(), &new_year), "2020 2021");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert!(parse_prefix("!{timestamp:yyyy").is_err());
        assert!(parse_prefix("!{nope:x}").is_err());
        assert!(parse_prefix("!{timestamp:qqq}").is_err());
        assert!(parse_prefix("!{timestamp:'open}").is_err());
        assert!(parse_prefix("!{partitionKeyFromQuery:}").is_err());
        assert!(has_expressions(&parse_prefix("!{partitionKeyFromQuery:id}").unwrap()));
        assert!(!has_expressions(&parse_prefix("plain/").unwrap()));
        assert!(has_expressions(&parse_prefix("!{firehose:random-string}").unwrap()));
    }
}
