//! Cron expressions and time zones from any text: they parse or fail with an error, and a
//! schedule's next run is always later than the time asked about.
#![no_main]

use libfuzzer_sys::fuzz_target;
use millrace::Schedule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, zone) = text.split_once('\n').unwrap_or((text, "UTC"));
    let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    for schedule in [Schedule::cron(pattern), Schedule::cron_in(pattern, zone)]
        .into_iter()
        .flatten()
    {
        if let Some(next) = schedule.next_after(at) {
            assert!(
                next > at,
                "{pattern:?} in {zone:?}: {next} is not after {at}"
            );
        }
    }
});
