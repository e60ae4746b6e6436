//! `config::parse` on arbitrary text, as `odoogate check` reads a file.
//! Checks: no panic while parsing or while formatting the error.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = odoogate::config::parse(text, "fuzz.toml") {
        let _ = error.to_string();
    }
});
