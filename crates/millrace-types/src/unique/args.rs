//! The args part of a unique key: the canonical args JSON River hashes (every argument, or
//! only the selected unique fields, keys sorted as River's `sjson` writes them), and the
//! small JSON scanner that finds fields in it without reordering their values.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Args JSON or unique fields that cannot make the args part of a unique key.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CanonicalArgsError(#[from] ArgsProblem);

#[derive(Debug, thiserror::Error)]
enum ArgsProblem {
    #[error("args for a unique key must be JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("args for a unique key must be a JSON object")]
    NotObject,
    #[error("unique field {0:?} ends in an escape")]
    TrailingEscape(String),
    #[error("a unique field's path has an empty segment")]
    EmptySegment,
    #[error("unique field segment {0:?} needs array semantics, which River does not support")]
    ArraySegment(String),
    #[error("unique field {outer:?} contains another selected unique field, {inner:?}")]
    Nested {
        outer: Vec<String>,
        inner: Vec<String>,
    },
}

/// The args JSON that is hashed into a unique key, as River builds it.
///
/// `fields` are the args' unique fields as dotted paths (`customer.id` is the field `id` inside
/// `customer`); a backslash escapes a literal dot or backslash (`user\.id` is the one field
/// named `user.id`). This is the syntax of `riverqueue`'s `unique(by_args("path", ...))`. See
/// [`canonical_args_paths`] for what is built; `None` or an empty list hashes every argument.
///
/// # Errors
///
/// When `args_json` is not JSON or not an object (an empty array `[]` counts as `{}` without
/// fields), or a field's path is malformed: an empty segment, a trailing backslash, a segment
/// of digits only or `-1`, or a path inside another selected path.
///
/// ```
/// use millrace_types::unique::canonical_args;
///
/// let json = r#"{"b":2,"a":{"z":1,"y":2},"c":3}"#;
/// assert_eq!(canonical_args(json, None).unwrap(), r#"{"a":{"z":1,"y":2},"b":2,"c":3}"#);
/// assert_eq!(canonical_args(json, Some(&["c", "a.y"])).unwrap(), r#"{"a":{"y":2},"c":3}"#);
/// // Every selected field missing: nothing is hashed after `&args=`.
/// assert_eq!(canonical_args(json, Some(&["x"])).unwrap(), "");
/// ```
pub fn canonical_args(
    args_json: &str,
    fields: Option<&[&str]>,
) -> Result<String, CanonicalArgsError> {
    let paths = fields
        .unwrap_or_default()
        .iter()
        .map(|field| split_unique_path(field))
        .collect::<Result<Vec<_>, _>>()?;
    let paths: Vec<Vec<&str>> = paths
        .iter()
        .map(|path| path.iter().map(String::as_str).collect())
        .collect();
    let paths: Vec<&[&str]> = paths.iter().map(Vec::as_slice).collect();
    canonical_args_paths(args_json, &paths)
}

/// Splits a dotted unique field path (`customer.id`, `user\.id`) into its literal segments.
///
/// # Errors
///
/// When the path ends in a lone backslash or has an empty segment.
///
/// ```
/// use millrace_types::unique::split_unique_path;
///
/// assert_eq!(split_unique_path("customer.id").unwrap(), ["customer", "id"]);
/// assert_eq!(split_unique_path(r"user\.id").unwrap(), ["user.id"]);
/// assert!(split_unique_path("a..b").is_err());
/// ```
pub fn split_unique_path(path: &str) -> Result<Vec<String>, CanonicalArgsError> {
    let mut segments = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => segments.last_mut().expect("never empty").push(escaped),
                None => return Err(ArgsProblem::TrailingEscape(path.to_owned()).into()),
            },
            '.' => segments.push(String::new()),
            c => segments.last_mut().expect("never empty").push(c),
        }
    }
    if segments.iter().any(String::is_empty) {
        return Err(ArgsProblem::EmptySegment.into());
    }
    Ok(segments)
}

/// The args JSON that is hashed into a unique key, from unique fields given as literal path
/// segments (`&[&["customer", "id"], &["user.id"]]`), the form `riverqueue`'s
/// `JobArgs::unique_fields` returns.
///
/// `args_json` must be the args exactly as they are encoded for storage; River's encoders write
/// compact JSON. What is built is what River builds:
///
/// * With no fields, every top-level member, keys sorted bytewise (by their unescaped text), the
///   first of duplicate keys kept, each value's text as encoded (nested member order and
///   whitespace inside values are kept; whitespace between top-level tokens is not). An empty
///   array `[]` gives `{}`.
/// * With fields, a new object holding each field found, nested paths as nested objects. The
///   fields are placed in the order of their paths joined with `.` (so `a-b` comes before `a.c`,
///   making `{"a-b":…,"a":{"c":…}}`); members keep the order in which they were first placed.
///   Missing fields, or paths through non-objects, are left out; an explicit `null` is kept. When
///   no field is found the result is empty.
/// * Keys are written as Go's `sjson` writes them: verbatim when they are printable ASCII
///   without `"` or `\` (even if the input escaped them), otherwise as a JSON string with Go's
///   escaping (`<`, `>`, `&`, U+2028 and U+2029 as `\u00XX`/`\u20XX`).
///
/// # Errors
///
/// As [`canonical_args`], except for the dotted-path syntax.
///
/// ```
/// use millrace_types::unique::canonical_args_paths;
///
/// let json = r#"{"user.id":1,"user":{"id":2},"a-b":3,"a":{"c":null}}"#;
/// assert_eq!(
///     canonical_args_paths(json, &[&["user.id"], &["user", "id"], &["a", "c"], &["a-b"]]).unwrap(),
///     r#"{"a-b":3,"a":{"c":null},"user":{"id":2},"user.id":1}"#
/// );
/// ```
pub fn canonical_args_paths(
    args_json: &str,
    fields: &[&[&str]],
) -> Result<String, CanonicalArgsError> {
    serde_json::from_str::<serde::de::IgnoredAny>(args_json).map_err(ArgsProblem::NotJson)?;
    if fields.is_empty() {
        all_args(args_json)
    } else {
        selected_args(args_json, fields)
    }
}

fn all_args(json: &str) -> Result<String, CanonicalArgsError> {
    if is_empty_array(json) {
        return Ok("{}".to_owned());
    }
    let mut members = object_members(json).ok_or(ArgsProblem::NotObject)?;
    // Stable: of duplicate keys the first stays first, and dedup keeps it.
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut out = String::from("{");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_key(&mut out, key);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    Ok(out)
}

fn selected_args(json: &str, fields: &[&[&str]]) -> Result<String, CanonicalArgsError> {
    if object_members(json).is_none() {
        return Err(ArgsProblem::NotObject.into());
    }
    let mut paths: Vec<&[&str]> = fields.to_vec();
    paths.sort_by_cached_key(|path| (path.join("."), gjson_escaped(path)));
    paths.dedup();
    for path in &paths {
        for segment in *path {
            if segment.is_empty() {
                return Err(ArgsProblem::EmptySegment.into());
            }
            if *segment == "-1" || segment.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ArgsProblem::ArraySegment((*segment).to_owned()).into());
            }
        }
    }
    for outer in &paths {
        if let Some(inner) = paths
            .iter()
            .find(|inner| inner.len() > outer.len() && inner.starts_with(outer))
        {
            return Err(ArgsProblem::Nested {
                outer: outer.iter().map(|s| (*s).to_owned()).collect(),
                inner: inner.iter().map(|s| (*s).to_owned()).collect(),
            }
            .into());
        }
    }

    let mut root: Vec<Placed<'_>> = Vec::new();
    for path in paths {
        if let Some(value) = find_path(json, path) {
            place(&mut root, path, value);
        }
    }
    if root.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::new();
    write_placed(&mut out, &root);
    Ok(out)
}

/// A member of the object built from selected fields, in placement order.
struct Placed<'a> {
    key: String,
    value: PlacedValue<'a>,
}

enum PlacedValue<'a> {
    Raw(&'a str),
    Object(Vec<Placed<'a>>),
}

fn place<'a>(members: &mut Vec<Placed<'a>>, path: &[&str], value: &'a str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let index = match members.iter().position(|m| m.key == *first) {
        Some(index) => index,
        None => {
            members.push(Placed {
                key: (*first).to_owned(),
                value: PlacedValue::Object(Vec::new()),
            });
            members.len() - 1
        }
    };
    if rest.is_empty() {
        members[index].value = PlacedValue::Raw(value);
    } else if let PlacedValue::Object(children) = &mut members[index].value {
        // Nested paths were refused above, so a member on the way is always an object.
        place(children, rest, value);
    }
}

fn write_placed(out: &mut String, members: &[Placed<'_>]) {
    out.push('{');
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_key(out, &member.key);
        out.push(':');
        match &member.value {
            PlacedValue::Raw(raw) => out.push_str(raw),
            PlacedValue::Object(children) => write_placed(out, children),
        }
    }
    out.push('}');
}

/// The text of the value at `path`, following the first member with each key, or `None` when
/// a segment is missing or a value on the way is not an object.
fn find_path<'a>(json: &'a str, path: &[&str]) -> Option<&'a str> {
    let mut current = json;
    for segment in path {
        current = object_members(current)?
            .into_iter()
            .find(|(key, _)| key == segment)?
            .1;
    }
    Some(current)
}

/// A path written in gjson's syntax, whose byte order breaks ties between paths that join to
/// the same dotted string (`["a.b"]` against `["a", "b"]`), as River for Go orders them.
fn gjson_escaped(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if segment.starts_with(':') {
            out.push(b'\\');
        }
        for b in segment.bytes() {
            let plain = b.is_ascii_alphanumeric()
                || b <= b' '
                || b > b'~'
                || b == b'_'
                || b == b'-'
                || b == b':';
            if !plain {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out
}

/// Writes an object key as `sjson` does: verbatim when printable ASCII without `"` or `\`,
/// otherwise as a JSON string with Go's `encoding/json` escaping.
fn push_key(out: &mut String, key: &str) {
    if key
        .bytes()
        .all(|b| (0x20..=0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(key);
        out.push('"');
        return;
    }
    out.push('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `json` is an empty array, whitespace aside.
fn is_empty_array(json: &str) -> bool {
    let mut cursor = Cursor::new(json);
    cursor.skip_space();
    let open = cursor.eat(b'[');
    cursor.skip_space();
    let close = cursor.eat(b']');
    cursor.skip_space();
    open && close && cursor.at_end()
}

/// The members of the JSON object `json` (already known to be valid JSON): each key unescaped
/// and each value's text as written. `None` when `json` is not an object.
fn object_members(json: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let mut cursor = Cursor::new(json);
    cursor.skip_space();
    if !cursor.eat(b'{') {
        return None;
    }
    let mut members = Vec::new();
    cursor.skip_space();
    if cursor.eat(b'}') {
        return Some(members);
    }
    loop {
        cursor.skip_space();
        let key = cursor.string()?;
        let key = if key.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(key).ok()?)
        } else {
            Cow::Borrowed(&key[1..key.len() - 1])
        };
        cursor.skip_space();
        if !cursor.eat(b':') {
            return None;
        }
        cursor.skip_space();
        members.push((key, cursor.value()?));
        cursor.skip_space();
        if cursor.eat(b'}') {
            return Some(members);
        }
        if !cursor.eat(b',') {
            return None;
        }
    }
}

/// A position in valid JSON text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, at: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at == self.text.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    /// Skips JSON's insignificant whitespace.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string token, quotes included.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.text.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    /// A whole value's text: a string, an object or array with everything in it, or a scalar.
    fn value(&mut self) -> Option<&'a str> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.at += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => self.at += 1,
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
            }
        }
        self.text.get(start..self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_args_sorts_top_level_and_keeps_values() {
        let json = "{ \"z\": [1, 2], \"a\": \"x y\", \"m\": 1.0 }";
        assert_eq!(
            canonical_args(json, None).unwrap(),
            r#"{"a":"x y","m":1.0,"z":[1, 2]}"#
        );
        assert_eq!(canonical_args("[]", None).unwrap(), "{}");
        assert!(canonical_args("[1]", None).is_err());
        assert!(canonical_args("{", None).is_err());
        assert_eq!(
            canonical_args(r#"{"a":1,"a":2}"#, None).unwrap(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn canonical_args_writes_keys_like_sjson() {
        let json = r#"{"\u003ck\u003e":1,"é&":2,"a\"b":3}"#;
        assert_eq!(
            canonical_args(json, None).unwrap(),
            r#"{"<k>":1,"a\"b":3,"é\u0026":2}"#
        );
    }

    #[test]
    fn canonical_args_keeps_nested_unique_fields() {
        let json = r#"{"customer":{"id":7,"name":"n"},"amount":3,"note":"x"}"#;
        assert_eq!(
            canonical_args(json, Some(&["customer.id", "amount", "missing"])).unwrap(),
            r#"{"amount":3,"customer":{"id":7}}"#
        );
    }

    #[test]
    fn canonical_args_refuses_bad_paths() {
        let json = r#"{"a":{"b":1}}"#;
        assert!(canonical_args(json, Some(&["a", "a.b"])).is_err());
        assert!(canonical_args(json, Some(&["a.0"])).is_err());
        assert!(canonical_args(json, Some(&["-1"])).is_err());
        assert!(canonical_args(json, Some(&["a."])).is_err());
        assert!(canonical_args(json, Some(&["a\\"])).is_err());
        assert!(canonical_args("[]", Some(&["a"])).is_err());
    }
}
