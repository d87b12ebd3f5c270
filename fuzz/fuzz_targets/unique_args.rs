//! Unique-key args from any text and unique field paths: an error or JSON, never a panic;
//! and the key of what canonicalizes is stable when canonicalized again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace_types::unique::{UniqueKeyParts, canonical_args, split_unique_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is a unique field path, the rest the args.
    let (field, args) = text.split_once('\n').unwrap_or(("", text));
    let _ = split_unique_path(field);
    let fields = [field];
    for selected in [None, Some(&fields[..])] {
        if let Ok(canonical) = canonical_args(args, selected) {
            if !canonical.is_empty() {
                let value: serde_json::Value =
                    serde_json::from_str(&canonical).expect("canonical args are JSON");
                assert!(value.is_object());
                // Canonical of canonical is itself when every member is kept.
                if selected.is_none() {
                    assert_eq!(canonical_args(&canonical, None).unwrap(), canonical);
                }
            }
            let parts = UniqueKeyParts {
                kind: Some("k"),
                args: Some(&canonical),
                ..UniqueKeyParts::default()
            };
            assert_eq!(parts.key().len(), 32);
        }
    }
});
