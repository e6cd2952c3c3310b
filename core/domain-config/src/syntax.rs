//! The syntax of configuration files, without meaning: lines of
//! `key = value`, where a value is a quoted string, a number, or a list of
//! values in `[ ]` (which may span lines). `#` starts a comment outside strings.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A value as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(u64),
    List(Vec<Value>),
}

impl Value {
    /// The value written back in configuration syntax.
    pub fn render(&self) -> String {
        match self {
            Value::Int(n) => alloc::format!("{n}"),
            Value::Str(s) => {
                let mut out = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            Value::List(items) => {
                let inner: Vec<String> = items.iter().map(Value::render).collect();
                alloc::format!("[{}]", inner.join(", "))
            }
        }
    }
}

/// A configuration error: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line; 0 for errors that belong to no line (overrides, whole file).
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, self.line) {
            (Some(k), 0) => write!(f, "{}: {}: {}", self.file, k, self.message),
            (Some(k), l) => write!(f, "{}:{}: {}: {}", self.file, l, k, self.message),
            (None, 0) => write!(f, "{}: {}", self.file, self.message),
            (None, l) => write!(f, "{}:{}: {}", self.file, l, self.message),
        }
    }
}

/// One `key = value` entry and the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub line: usize,
}

struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips blanks and comments; newlines too if `newlines`.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => {
                    self.bump();
                }
                b'\n' if newlines => {
                    self.bump();
                }
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }
}

fn err(file: &str, line: usize, key: Option<&str>, message: &str) -> ConfigError {
    ConfigError {
        file: file.into(),
        line,
        key: key.map(Into::into),
        message: message.into(),
    }
}

/// Splits a file into entries. Stops at the first syntax error.
pub fn entries(file: &str, text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut c = Cursor {
        text: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let mut out = Vec::new();
    loop {
        c.skip(true);
        let Some(first) = c.peek() else {
            return Ok(out);
        };
        let line = c.line;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return Err(err(file, line, None, "expected a key"));
        }
        let start = c.at;
        while c
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            c.bump();
        }
        let key = String::from_utf8_lossy(&c.text[start..c.at]).into_owned();
        c.skip(false);
        if c.bump() != Some(b'=') {
            return Err(err(file, line, Some(&key), "expected '=' after the key"));
        }
        c.skip(false);
        let value = value(&mut c, file, &key)?;
        c.skip(false);
        match c.peek() {
            None | Some(b'\n') | Some(b';') => {
                if c.peek() == Some(b';') {
                    c.bump();
                }
            }
            Some(_) => {
                return Err(err(
                    file,
                    c.line,
                    Some(&key),
                    "unexpected text after the value",
                ))
            }
        }
        out.push(Entry { key, value, line });
    }
}

fn value(c: &mut Cursor<'_>, file: &str, key: &str) -> Result<Value, ConfigError> {
    match c.peek() {
        Some(q @ (b'"' | b'\'')) => {
            let line = c.line;
            c.bump();
            let mut s = Vec::new();
            loop {
                match c.bump() {
                    None | Some(b'\n') => {
                        return Err(err(file, line, Some(key), "unterminated string"))
                    }
                    Some(b) if b == q => break,
                    Some(b'\\') => match c.bump() {
                        Some(b'n') => s.push(b'\n'),
                        Some(b't') => s.push(b'\t'),
                        Some(b @ (b'\\' | b'"' | b'\'')) => s.push(b),
                        _ => return Err(err(file, line, Some(key), "unknown escape in a string")),
                    },
                    Some(b) => s.push(b),
                }
            }
            String::from_utf8(s)
                .map(Value::Str)
                .map_err(|_| err(file, line, Some(key), "string is not UTF-8"))
        }
        Some(b'[') => {
            let line = c.line;
            c.bump();
            let mut items = Vec::new();
            loop {
                c.skip(true);
                match c.peek() {
                    None => return Err(err(file, line, Some(key), "unterminated list")),
                    Some(b']') => {
                        c.bump();
                        return Ok(Value::List(items));
                    }
                    _ => {}
                }
                items.push(value(c, file, key)?);
                c.skip(true);
                match c.peek() {
                    Some(b',') => {
                        c.bump();
                    }
                    Some(b']') => {}
                    None => return Err(err(file, line, Some(key), "unterminated list")),
                    Some(_) => {
                        return Err(err(
                            file,
                            c.line,
                            Some(key),
                            "expected ',' or ']' in a list",
                        ))
                    }
                }
            }
        }
        Some(b) if b.is_ascii_digit() => {
            let line = c.line;
            let start = c.at;
            while c.peek().is_some_and(|b| b.is_ascii_alphanumeric()) {
                c.bump();
            }
            let text = core::str::from_utf8(&c.text[start..c.at]).unwrap_or("");
            parse_int(text)
                .map(Value::Int)
                .ok_or_else(|| err(file, line, Some(key), "not a number"))
        }
        _ => Err(err(
            file,
            c.line,
            Some(key),
            "expected a string, a number or a list",
        )),
    }
}

/// A number in decimal or `0x` hex.
pub fn parse_int(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Reads a command-line override `key=value`: quoted string, number, `[list]`,
/// or a bare word taken as a string.
pub fn override_entry(arg: &str) -> Result<Entry, ConfigError> {
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("command line", 0, None, "an override is KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(err("command line", 0, Some(key), "not a key"));
    }
    let raw = raw.trim();
    let quoted_or_structured =
        raw.starts_with(['"', '\'', '[']) || raw.starts_with(|c: char| c.is_ascii_digit());
    let value = if quoted_or_structured {
        let line = alloc::format!("{key} = {raw}");
        let mut e = entries("command line", &line)?;
        e.pop()
            .map(|e| e.value)
            .ok_or_else(|| err("command line", 0, Some(key), "no value"))?
    } else {
        Value::Str(raw.into())
    };
    Ok(Entry {
        key: key.into(),
        value,
        line: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn keys_values_comments_lists() {
        let text = "# a guest\nname = \"web\"   # trailing comment\nmemory = 64\ndisk = [ 'phy:data,xvda,w',\n  'phy:logs,xvdb,r' ]\nempty = []\nhex = 0x10\n";
        let e = entries("web.cfg", text).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(
            (e[0].key.as_str(), &e[0].value, e[0].line),
            ("name", &s("web"), 2)
        );
        assert_eq!(e[1].value, Value::Int(64));
        assert_eq!(
            e[2].value,
            Value::List(vec![s("phy:data,xvda,w"), s("phy:logs,xvdb,r")])
        );
        assert_eq!(e[2].line, 4);
        assert_eq!(e[3].value, Value::List(vec![]));
        assert_eq!(e[4].value, Value::Int(16));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            ("name = \"web\nmemory = 1", 1, "unterminated string"),
            ("memory = 12abc", 1, "not a number"),
            ("\n\n= 3", 3, "expected a key"),
            ("name \"x\"", 1, "expected '='"),
            ("disk = ['a' 'b']", 1, "expected ',' or ']'"),
            ("disk = ['a',", 1, "unterminated list"),
            ("name = \"a\" junk", 1, "unexpected text"),
            ("cmdline = \"\\q\"", 1, "unknown escape"),
            ("vcpus = yes", 1, "expected a string"),
        ];
        for (text, line, what) in cases {
            let e = entries("f.cfg", text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.message.contains(what), "{text}: {}", e.message);
            assert!(
                alloc::string::ToString::to_string(&e).starts_with(&alloc::format!("f.cfg:{line}"))
            );
        }
    }

    #[test]
    fn overrides() {
        assert_eq!(override_entry("memory=128").unwrap().value, Value::Int(128));
        assert_eq!(override_entry("name=web2").unwrap().value, s("web2"));
        assert_eq!(override_entry("cmdline=\"a b\"").unwrap().value, s("a b"));
        assert_eq!(
            override_entry("disk=['x']").unwrap().value,
            Value::List(vec![s("x")])
        );
        assert!(override_entry("memory").is_err());
        assert!(override_entry("=3").is_err());
        assert!(override_entry("memory=12q").is_err());
    }

    #[test]
    fn rendered_values_parse_back() {
        for v in [
            s("plain"),
            s("with \"quotes\" and \\ and\nnewline"),
            Value::Int(7),
            Value::List(vec![s("a"), Value::Int(2)]),
        ] {
            let text = alloc::format!("k = {}\n", v.render());
            assert_eq!(entries("r", &text).unwrap()[0].value, v);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 42u64;
        for len in [0usize, 1, 5, 40, 300] {
            for _ in 0..500 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        b"ab =\"'[],#\n0x9_\\ "[(seed >> 60) as usize % 18]
                    })
                    .collect();
                let text = String::from_utf8_lossy(&bytes);
                let _ = entries("fuzz", &text);
            }
        }
    }
}
