//! Every X response parser (INIT, APPEND, FINALIZE/STATUS bodies, error bodies, rate-limit
//! and retry headers, status mapping) on arbitrary bytes: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chunkwise::protocol::fuzzing::parse_response(data);
});
