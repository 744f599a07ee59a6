//! Deploy-time checks that need the module's bytes or its compiled form,
//! beyond the ABI shape (`abi::check_module`): the bytes are a wasm
//! module at all, and the memory limit leaves room for the memory the
//! module declares.

use crate::error::DeployError;
use rime_abi::EXPORT_MEMORY;
use wasmtime::{ExternType, Module};

/// The first four bytes of every binary wasm module: `\0asm`.
pub const WASM_MAGIC: [u8; 4] = *b"\0asm";

/// Bytes of one wasm page.
pub const WASM_PAGE_BYTES: u64 = 64 << 10;

/// Refuses bytes that are neither a binary module (`\0asm`) nor wasm text
/// (which wasmtime also compiles: the tests deploy `(module ...)` text).
/// Without this, wasmtime reads any other bytes as text and answers
/// `input bytes aren't valid utf-8`, which names no fix.
pub fn check_magic(wasm: &[u8]) -> Result<(), DeployError> {
    if wasm.starts_with(&WASM_MAGIC) || looks_like_wat(wasm) {
        return Ok(());
    }
    let head: Vec<String> = wasm.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let found = if head.is_empty() {
        "the module is empty".to_string()
    } else {
        format!("it starts with {}", head.join(" "))
    };
    Err(DeployError::BadMagic(format!(
        "{found}, a wasm module starts with 00 61 73 6d (\"\\0asm\")"
    )))
}

/// UTF-8 whose first token, past whitespace and `;;` comments, opens a
/// parenthesis: wasm text, for wasmtime's own parser to judge.
fn looks_like_wat(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut rest = text.trim_start();
    while let Some(comment) = rest.strip_prefix(";;") {
        rest = comment.split_once('\n').map_or("", |(_, r)| r).trim_start();
    }
    rest.starts_with('(')
}

/// Refuses a memory limit below the minimum size of the module's memory:
/// instantiation would fail on every call.
pub fn check_memory(module: &Module, limit_bytes: u64) -> Result<(), DeployError> {
    let Some(ExternType::Memory(m)) = module.get_export(EXPORT_MEMORY) else {
        return Ok(()); // the ABI check names a missing memory
    };
    let min_pages = m.minimum();
    let min_bytes = min_pages.saturating_mul(WASM_PAGE_BYTES);
    if limit_bytes < min_bytes {
        return Err(DeployError::MemoryBelowMinimum {
            limit_bytes,
            min_bytes,
            min_pages,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_text_pass_the_magic_check_and_nothing_else_does() {
        assert!(check_magic(b"\0asm\x01\0\0\0").is_ok());
        assert!(check_magic(b"  ;; a comment\n (module)").is_ok());
        let e = check_magic(b"\x7fELF\x02\x01").unwrap_err().to_string();
        assert_eq!(
            e,
            "not a wasm module (bad magic): it starts with 7f 45 4c 46, \
             a wasm module starts with 00 61 73 6d (\"\\0asm\")"
        );
        let e = check_magic(b"").unwrap_err().to_string();
        assert!(e.contains("bad magic): the module is empty"), "{e}");
        let e = check_magic(b"hello").unwrap_err().to_string();
        assert!(e.contains("it starts with 68 65 6c 6c"), "{e}");
    }
}
