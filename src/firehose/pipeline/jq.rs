//! MetadataExtraction: the partition keys of a JSON record from a jq query (AWS runs
//! JQ-1.6; firelake runs the same query through the `jaq` crates, compiled once at
//! create), with the key values rendered as jq 1.6 prints them.

use std::fmt;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

/// A compiled MetadataExtraction query.
pub struct Query {
    filter: jaq_core::Filter<data::JustLut<Val>>,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Query")
    }
}

/// Why a record's keys could not be extracted, as the error document's message says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError(pub String);

impl Query {
    /// Compiles `code`; the error says why it is not a valid query.
    pub fn compile(code: &str) -> Result<Query, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, File { code, path: () }).map_err(|errs| {
            let first = errs.into_iter().next().map(|(_, err)| format!("{err:?}")).unwrap_or_default();
            format!("the query could not be parsed: {}", first.chars().take(200).collect::<String>())
        })?;
        let filter = jaq_core::Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
            let names: Vec<String> =
                errs.into_iter().flat_map(|(_, errs)| errs.into_iter().map(|(name, _)| name.to_string())).take(5).collect();
            format!("the query names what jq does not define: {}", names.join(", "))
        })?;
        Ok(Query { filter })
    }

    /// The keys the query gives for `record` (it must give one object), in the object's
    /// order, each with its value as partition text: `None` for a value that cannot be
    /// one (null, an array, an object).
    pub fn extract(&self, record: &[u8]) -> Result<Vec<(String, Option<String>)>, ExtractError> {
        let input = jaq_json::read::parse_single(record).map_err(|_| ExtractError("Non JSON record provided".to_owned()))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
        let value = match outputs.next() {
            Some(Ok(value)) => value,
            Some(Err(err)) => return Err(ExtractError(format!("JQ query evaluation failed: {}", short(&err.to_string())))),
            None => return Err(ExtractError("JQ query produced no output".to_owned())),
        };
        let Val::Obj(map) = value else {
            return Err(ExtractError("JQ query output is not a JSON object".to_owned()));
        };
        let mut keys = Vec::with_capacity(map.len());
        for (key, value) in map.iter() {
            let name = match key {
                Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
                other => render(other).unwrap_or_default(),
            };
            keys.push((name, render(value)));
        }
        Ok(keys)
    }
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A key value as text: a string as it is, a number or boolean as jq 1.6 prints it;
/// null, arrays and objects are no partition.
fn render(value: &Val) -> Option<String> {
    match value {
        Val::TStr(s) | Val::BStr(s) => Some(String::from_utf8_lossy(s).into_owned()),
        Val::Bool(b) => Some(b.to_string()),
        Val::Num(n) => {
            let text = n.to_string();
            // jq 1.6 holds every number as a double.
            Some(text.parse::<f64>().map(jq16_number).unwrap_or(text))
        }
        Val::Null | Val::Arr(_) | Val::Obj(_) => None,
    }
}

/// Prints a double as jq 1.6 does (its `jvp_dtoa_fmt`): the shortest digits that read
/// back as the same double, in plain notation unless the decimal point is more than 15
/// places past the digits or the number is below 1e-4, then `d.ddde±XX`.
pub fn jq16_number(x: f64) -> String {
    if x.is_nan() {
        return "null".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "1.7976931348623157e+308".to_owned() } else { "-1.7976931348623157e+308".to_owned() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".to_owned() } else { "0".to_owned() };
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e19".
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let decpt = exponent + 1;
    let n = digits.len() as i32;
    let sign = if x < 0.0 { "-" } else { "" };
    if decpt <= -4 || decpt > n + 15 {
        let rest = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let e = decpt - 1;
        return format!("{sign}{}{rest}e{}{:02}", &digits[..1], if e < 0 { '-' } else { '+' }, e.abs());
    }
    if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{sign}{digits}{}", "0".repeat((decpt - n) as usize))
    } else {
        format!("{sign}{}.{}", &digits[..decpt as usize], &digits[decpt as usize..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(query: &str, record: &str, expected: &[(&str, &str)]) {
        let keys = Query::compile(query).unwrap().extract(record.as_bytes()).unwrap();
        let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or("<none>"))).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn queries_real_configurations_use() {
        check("{vin: .vin}", r#"{"vin":"WVW123","speed":3}"#, &[("vin", "WVW123")]);
        check("{day: .ts[0:10]}", r#"{"ts":"2024-05-01T13:00:00Z"}"#, &[("day", "2024-05-01")]);
        check(r#"{year: .ts|strftime("%Y")}"#, r#"{"ts":1700000000}"#, &[("year", "2023")]);
        check("{device: .type.device}", r#"{"type":{"device":"mobile"}}"#, &[("device", "mobile")]);
        check("{a: .a, b: .b}", r#"{"a":1.0,"b":true}"#, &[("a", "1"), ("b", "true")]);
        check(r#"{g: (.logGroup|ltrimstr("/"))}"#, r#"{"logGroup":"/aws/x"}"#, &[("g", "aws/x")]);
    }

    #[test]
    fn failures_say_why() {
        let query = Query::compile("{vin: .vin}").unwrap();
        assert_eq!(query.extract(b"not json").unwrap_err().0, "Non JSON record provided");
        assert_eq!(query.extract(br#"{"other":1}"#).unwrap(), [("vin".to_owned(), None)], "a null key is no partition");
        assert!(Query::compile("{vin: .vin").is_err());
        assert!(Query::compile("{vin: nosuchfunction}").is_err());
        assert!(Query::compile(".[").is_err());
    }

    #[test]
    fn numbers_print_as_jq_1_6_prints_them() {
        for (x, text) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (1e6, "1000000"),
            (1e15, "1000000000000000"),
            (1e16, "1e+16"),
            (1.5e16, "15000000000000000"),
            (1.5e17, "1.5e+17"),
            (12345678901234567890.0, "12345678901234567000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-9, "-2.5e-09"),
            (1e300, "1e+300"),
            (-1.0, "-1"),
            (std::f64::consts::PI, "3.141592653589793"),
        ] {
            assert_eq!(jq16_number(x), text, "{x}");
        }
    }

    /// The same queries through Debian's `jq` 1.6 (the engine AWS names): every key and
    /// value must come out as jq prints it. `.ci/run` installs `jq`; without it this fails.
    /// One known difference is left out of the table: jaq reads `-0` as the integer 0, so
    /// a key value of `-0` is "0" where jq 1.6 prints "-0".
    #[test]
    fn agrees_with_jq_1_6() {
        let records = [
            r#"{"vin":"WVW1","speed":88.5,"ts":"2024-05-01T13:07:09Z","epoch":1714568829,"type":{"device":"mobile"},"tags":["a","b"],"n":1.0,"big":12345678901234567890,"small":0.00001,"flag":false,"logGroup":"/aws/lambda/f","detail":{"accountId":"123456789012"},"time":"2024-05-01T13:07:09Z","name":"Ünïcödé \"q\""}"#,
            r#"{"vin":"X","speed":-3,"ts":"1999-12-31T23:59:59Z","epoch":0,"type":{},"n":1e17,"big":-7,"small":1.5e16,"flag":true,"logGroup":"g","detail":{"accountId":42},"time":"2000-01-01T00:00:00Z","name":""}"#,
        ];
        let queries = [
            "{vin: .vin}",
            "{day: .ts[0:10]}",
            "{year: .epoch|strftime(\"%Y\"), hour: .epoch|strftime(\"%H\")}",
            "{device: .type.device}",
            "{speed: .speed}",
            "{n: .n, big: .big, small: .small}",
            "{flag: .flag}",
            "{k: .vin|ascii_downcase}",
            "{k: .vin|ascii_upcase}",
            "{g: (.logGroup|ltrimstr(\"/\"))}",
            "{account_id:.detail.accountId, year:(.time[0:4]), month:(.time[5:7]), day:(.time[8:10])}",
            "{t: .tags[0]}",
            "{count: (.tags|length)}",
            "{s: (.speed|tostring)}",
            "{f: (.speed|floor)}",
            "{name: .name}",
            "{joined: ([.vin, .ts[0:4]]|join(\"-\"))}",
            "{cond: (if .speed > 50 then \"fast\" else \"slow\" end)}",
            "{split: (.ts|split(\"T\")[0])}",
            "{vin: .vin, missing: .nothing}",
            "{d: (.ts|fromdateiso8601|strftime(\"%Y/%m/%d\"))}",
            "{m: (.speed * 2)}",
        ];
        for query in queries {
            let compiled = Query::compile(query).unwrap_or_else(|e| panic!("{query}: {e}"));
            for record in records {
                let program =
                    format!("({query}) | to_entries[] | \"\\(.key)\\t\\(.value | if type == \"string\" then . else tojson end)\"");
                let mut child = std::process::Command::new("jq")
                    .args(["-r", &program])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("jq 1.6 is installed (apt-get install jq)");
                std::io::Write::write_all(&mut child.stdin.take().unwrap(), record.as_bytes()).unwrap();
                let output = child.wait_with_output().unwrap();
                assert!(output.status.success(), "jq failed on {query}");
                let expected: Vec<(String, String)> = String::from_utf8(output.stdout)
                    .unwrap()
                    .lines()
                    .map(|line| {
                        let (k, v) = line.split_once('\t').unwrap();
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                let got = compiled.extract(record.as_bytes()).unwrap_or_else(|e| panic!("{query}: {e:?}"));
                assert_eq!(got.len(), expected.len(), "{query} on {record}");
                for ((key, value), (jq_key, jq_value)) in got.iter().zip(&expected) {
                    assert_eq!(key, jq_key, "{query}");
                    match value {
                        Some(value) => assert_eq!(value, jq_value, "{query} on {record}"),
                        None => assert!(jq_value == "null" || jq_value.starts_with(['[', '{']), "{query}: jq gave {jq_value}"),
                    }
                }
            }
        }
    }
}
