//! The settings loader on arbitrary file contents: no panic, every refusal lists its
//! problems, and settings that load print as a file that loads back to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = chunkwise::settings::fuzzing::load_settings(data) {
        panic!("{broken}");
    }
});
