//! Schema names and unique state lists from any text: a schema name is valid exactly when it
//! is a plain identifier short enough for PostgreSQL's channel names, and it is then quoted
//! so that it can only ever name a schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace::Schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(schema) = Schema::new(text) {
        let first = text.chars().next().unwrap();
        assert!(first.is_ascii_alphabetic() || first == '_');
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let qualified = schema.qualify("river_job");
        assert!(!qualified.contains(';') && !qualified.contains('\''));
    }
});
