//! `range-scan`: Rime's `scan` interface over a `wasi:keyvalue` bucket.
//!
//! Input: `BUCKET START END LIMIT` (`-` for an open start or end). Output:
//! the entries `KEY=VALUE` in key order, comma-separated, all of them: the
//! guest pages through the range `LIMIT` entries at a time.

wit_bindgen::generate!({
    path: "../../../faas/wit",
    world: "rime:faaslet/faaslet",
    generate_all,
});

use exports::rime::faaslet::handler::Guest;
use rime::faaslet::scan;
use wasi::keyvalue::store;

struct RangeScan;

impl Guest for RangeScan {
    fn handle(input: Vec<u8>) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(input).map_err(|_| "input is not UTF-8".to_string())?;
        let [bucket, start, end, limit] = text.split(' ').collect::<Vec<_>>()[..] else {
            return Err("expected BUCKET START END LIMIT".into());
        };
        let bound = |s: &str| (s != "-").then(|| s.to_string());
        let limit: u32 = limit
            .parse()
            .map_err(|_| format!("not a limit: {limit:?}"))?;
        let bucket = store::open(bucket).map_err(|e| format!("{e:?}"))?;
        let (mut from, end) = (bound(start), bound(end));
        let mut shown = Vec::new();
        loop {
            let page = scan::range(&bucket, from.as_deref(), end.as_deref(), limit)
                .map_err(|e| format!("{e:?}"))?;
            let full = page.len() == limit as usize;
            for (k, v) in &page {
                shown.push(format!("{k}={}", String::from_utf8_lossy(v)));
            }
            match page.last() {
                // The next page starts just after the last key.
                Some((last, _)) if full => from = Some(format!("{last}\0")),
                _ => return Ok(shown.join(",").into_bytes()),
            }
        }
    }
}

export!(RangeScan);
