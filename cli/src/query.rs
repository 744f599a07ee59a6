//! Keys and query parameters of the HTTP API as bytes. Keys are byte
//! strings (`docs/http.md`), so percent-escapes in a path key or in a
//! query parameter decode to raw bytes: `%FF` is the byte 0xFF, never
//! U+FFFD (which is what decoding to a `String` made of it).

use rime_storage::MAX_KEY_LEN;

/// Largest `limit` of a scan, and the default.
pub const MAX_SCAN_LIMIT: usize = 1000;
pub const DEFAULT_SCAN_LIMIT: usize = 100;

/// `s` with `%XX` escapes decoded (and `+` as a space if `plus_is_space`,
/// as in a query string). A `%` not followed by two hex digits is an
/// error, not a literal.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
                match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => {
                        let end = b.len().min(i + 3);
                        return Err(format!(
                            "malformed percent-escape {:?} (use %XX with two hex digits)",
                            String::from_utf8_lossy(&b[i..end])
                        ));
                    }
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The `name=value` pairs of a query string, in order; names must be
/// UTF-8, values are bytes.
pub fn pairs(query: Option<&str>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = String::from_utf8(percent_decode(k, true)?)
            .map_err(|_| "a query parameter's name is not UTF-8".to_string())?;
        // Values may be secrets (`secret=KEY=VALUE`): the error names
        // the parameter, not the bytes.
        let v = percent_decode(v, true).map_err(|_| {
            format!("parameter {k:?}: malformed percent-escape (use %XX with two hex digits)")
        })?;
        out.push((k, v));
    }
    Ok(out)
}

/// A text parameter (grant, memory, deadline): its bytes must be UTF-8.
pub fn text(name: &str, v: Vec<u8>) -> Result<String, String> {
    String::from_utf8(v).map_err(|_| format!("parameter {name:?} is not UTF-8"))
}

/// `/state/{ns}/{key}` of a raw (still percent-encoded) request path:
/// the namespace and the key's bytes. `None` if the path has no key.
pub fn state_path(path: &str) -> Result<Option<(String, Vec<u8>)>, String> {
    let Some(rest) = path.strip_prefix("/state/") else {
        return Ok(None);
    };
    let Some((ns, key)) = rest.split_once('/') else {
        return Ok(None);
    };
    let ns = String::from_utf8(percent_decode(ns, false)?)
        .map_err(|_| "the namespace is not UTF-8".to_string())?;
    Ok(Some((ns, percent_decode(key, false)?)))
}

/// The parameters of `GET /state/{ns}`: keys in `[start, end)`, at most
/// `limit`.
#[derive(Debug, PartialEq)]
pub struct Scan {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
    pub limit: usize,
}

pub fn scan_params(query: Option<&str>) -> Result<Scan, String> {
    let mut scan = Scan {
        start: None,
        end: None,
        limit: DEFAULT_SCAN_LIMIT,
    };
    for (k, v) in pairs(query)? {
        match k.as_str() {
            "start" | "end" => {
                if v.len() > MAX_KEY_LEN {
                    return Err(format!(
                        "{k} is {} bytes: keys are at most {MAX_KEY_LEN} bytes",
                        v.len()
                    ));
                }
                if k == "start" {
                    scan.start = Some(v);
                } else {
                    scan.end = Some(v);
                }
            }
            "limit" => {
                scan.limit = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| (1..=MAX_SCAN_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit must be 1..={MAX_SCAN_LIMIT}"))?;
            }
            _ => return Err(format!("unknown parameter {k:?} (start, end, limit)")),
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_to_raw_bytes() {
        assert_eq!(percent_decode("%FF%00a", false), Ok(vec![0xff, 0, b'a']));
        assert_eq!(percent_decode("a+b%2Bc", true), Ok(b"a b+c".to_vec()));
        assert_eq!(percent_decode("a+b", false), Ok(b"a+b".to_vec()));
        assert!(percent_decode("%F", false).is_err());
        assert!(percent_decode("%GG", false).is_err());
        assert!(percent_decode("%", false).is_err());
    }

    #[test]
    fn scan_parameters() {
        let s = scan_params(Some("start=%FF&end=%FF%01&limit=5")).unwrap();
        assert_eq!(
            s,
            Scan {
                start: Some(vec![0xff]),
                end: Some(vec![0xff, 1]),
                limit: 5
            }
        );
        assert_eq!(scan_params(None).unwrap().limit, DEFAULT_SCAN_LIMIT);
        let long = format!("start={}", "a".repeat(MAX_KEY_LEN + 1));
        assert!(
            scan_params(Some(&long))
                .unwrap_err()
                .contains("at most 512")
        );
        let max = format!("end={}", "a".repeat(MAX_KEY_LEN));
        assert!(scan_params(Some(&max)).is_ok());
        assert!(scan_params(Some("limit=0")).is_err());
        assert!(scan_params(Some("limit=1001")).is_err());
        assert!(scan_params(Some("limit=x")).is_err());
        assert!(scan_params(Some("bogus=1")).is_err());
    }

    #[test]
    fn state_paths() {
        assert_eq!(
            state_path("/state/kv/a/%FF"),
            Ok(Some(("kv".into(), b"a/\xff".to_vec())))
        );
        assert_eq!(state_path("/state/kv"), Ok(None));
        assert!(state_path("/state/kv/%Z").is_err());
    }
}
