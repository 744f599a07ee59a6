//! `words`: a faaslet with Rust's std, built for `wasm32-wasip1`.
//!
//! - Input: text. Its words (split on whitespace, lower-cased) are counted
//!   in a `HashMap`; each word's total in the function's namespace grows by
//!   its count (`add`), and the number of texts seen by one (key
//!   `\x01texts`).
//! - Output: `texts=N` then `word=total` for the input's words, most
//!   frequent first (ties by word), e.g. `texts=2 the=3 cat=1`.
//! - Log: one `println!` line per invocation (stdout goes to the
//!   function's log).
//! - Configuration: the environment variable `WORDS_LABEL`, if set at
//!   deploy (`--env WORDS_LABEL=...`), starts the output (`label=... `).
//!
//! Everything std offers works except what a faaslet has no capability
//! for (files, sockets, sleeping); `SystemTime::now()` and random bytes are
//! fixed per invocation, so a conflict re-run computes the same output.

use rime_sdk::{Error, Namespace, faaslet};
use std::collections::HashMap;

/// Key of the number of texts counted.
const TEXTS_KEY: &[u8] = b"\x01texts";

#[faaslet]
fn words(input: &[u8]) -> Result<Vec<u8>, Error> {
    let text = String::from_utf8_lossy(input);
    let mut counts: HashMap<String, i64> = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut totals = Vec::with_capacity(counts.len());
    for (word, n) in &counts {
        totals.push((Namespace::OWN.add(word.as_bytes(), *n)?, word.as_str()));
    }
    totals.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let texts = Namespace::OWN.add(TEXTS_KEY, 1)?;
    println!(
        "words: text {texts} has {} words, {} distinct",
        counts.values().sum::<i64>(),
        counts.len()
    );
    let mut out = match std::env::var("WORDS_LABEL") {
        Ok(label) => format!("label={label} texts={texts}"),
        Err(_) => format!("texts={texts}"),
    };
    for (total, word) in totals {
        out += &format!(" {word}={total}");
    }
    Ok(out.into_bytes())
}
