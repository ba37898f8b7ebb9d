//! A small XML writer for S3 responses, and the escaping it needs.

/// The namespace of every S3 success body.
pub const NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

pub struct Xml {
    out: String,
}

impl Xml {
    /// A document with the XML declaration.
    pub fn document() -> Xml {
        Xml { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") }
    }

    /// Opens the root element with S3's namespace.
    pub fn root(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xmlns=\"");
        self.out.push_str(NAMESPACE);
        self.out.push_str("\">");
    }

    pub fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_into(&mut self.out, text);
        self.close(name);
    }

    pub fn leaf_opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(text) = text {
            self.leaf(name, text);
        }
    }

    /// `<name>inner</name>` with `inner` written by `f`.
    pub fn node(&mut self, name: &str, f: impl FnOnce(&mut Xml)) {
        self.open(name);
        f(self);
        self.close(name);
    }

    /// Appends markup as is; for the few elements that carry attributes.
    pub fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
    }

    /// Appends escaped text inside the element that is open.
    pub fn text(&mut self, text: &str) {
        escape_into(&mut self.out, text);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Escapes text for element content. Characters XML 1.0 cannot carry (most control
/// characters) are written as character references, as S3 does.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\r' => out.push_str(&format!("&#x{:X};", c as u32)),
            c => out.push(c),
        }
    }
}

/// ISO 8601 with milliseconds, as S3 writes timestamps in XML.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(build: impl FnOnce(&mut Xml), expected: &str) {
        let mut xml = Xml::document();
        build(&mut xml);
        assert_eq!(xml.finish(), format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{expected}"));
    }

    #[test]
    fn location_constraint() {
        // From the GetBucketLocation page of the S3 API reference.
        check(
            |x| {
                x.root("LocationConstraint");
                escape_into(&mut x.out, "eu-west-1");
                x.close("LocationConstraint");
            },
            "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">eu-west-1</LocationConstraint>",
        );
    }

    #[test]
    fn escaping() {
        check(|x| x.leaf("Key", "a&b<c>\"d'\r"), "<Key>a&amp;b&lt;c&gt;&quot;d&apos;&#xD;</Key>");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
