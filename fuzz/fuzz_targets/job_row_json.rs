//! Attempt errors, metadata and whole job rows decoded from any bytes, as rows written by any
//! client arrive as JSON: decoding never panics, and what decodes encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace_types::{AttemptError, JobRow, JobState};

fuzz_target!(|data: &[u8]| {
    if let Ok(err) = serde_json::from_slice::<AttemptError>(data) {
        let again: AttemptError =
            serde_json::from_str(&serde_json::to_string(&err).unwrap()).unwrap();
        assert_eq!(again, err);
    }
    // `errors jsonb[]`: entries may be null or any JSON.
    let _ = serde_json::from_slice::<Vec<Option<AttemptError>>>(data);
    if let Ok(row) = serde_json::from_slice::<JobRow>(data) {
        let again: JobRow = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        assert_eq!(again.id, row.id);
        assert_eq!(again.metadata, row.metadata);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(state) = text.parse::<JobState>() {
            assert_eq!(state.as_str(), text);
        }
    }
});
