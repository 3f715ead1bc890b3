//! The checkpoint reader on arbitrary bytes: no panic, and whatever reads must write and
//! read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = chunkwise::checkpoint::fuzzing::read_checkpoint(data) {
        panic!("{broken}");
    }
});
