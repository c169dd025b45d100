//! Query-string parameters: `a=1&b=%20x`, percent-decoded, `+` as space.
//!
//! Unknown parameters are ignored (as CnosDB does); a malformed escape, invalid UTF-8 or a
//! repeated known parameter is a 400, because guessing which value the client meant is worse.

use crate::http::error::HttpError;

/// The decoded parameters of one request, in order.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, HttpError> {
        let mut pairs = Vec::new();
        for part in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Params { pairs })
    }

    /// The value of a parameter; an error when it appears more than once.
    pub fn get(&self, name: &str) -> Result<Option<&str>, HttpError> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(HttpError::InvalidQuery(format!(
                "parameter {name:?} given more than once"
            )));
        }
        Ok(first)
    }

    /// The value of a parameter, or `default` when absent or empty.
    pub fn get_or<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str, HttpError> {
        Ok(self.get(name)?.filter(|v| !v.is_empty()).unwrap_or(default))
    }
}

fn decode(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        HttpError::InvalidQuery(format!("bad percent escape in {s:?}"))
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| HttpError::InvalidQuery(format!("{s:?} is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_finds() {
        let p = Params::parse(Some("db=my%20db&precision=ms&flag&x=a+b")).expect("parses");
        assert_eq!(p.get("db").expect("once"), Some("my db"));
        assert_eq!(p.get("precision").expect("once"), Some("ms"));
        assert_eq!(p.get("flag").expect("once"), Some(""));
        assert_eq!(p.get("x").expect("once"), Some("a b"));
        assert_eq!(p.get("none").expect("once"), None);
        assert_eq!(p.get_or("tenant", "cnosdb").expect("once"), "cnosdb");
    }

    #[test]
    fn refuses_bad_escapes_and_repeats() {
        assert!(Params::parse(Some("db=%zz")).is_err());
        assert!(Params::parse(Some("db=%e2%28")).is_err());
        assert!(Params::parse(Some("db=%4")).is_err());
        let p = Params::parse(Some("db=a&db=b")).expect("parses");
        assert!(p.get("db").is_err());
    }
}
