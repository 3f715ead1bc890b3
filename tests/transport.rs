//! Socket options of the built-in HTTP client that decide whether a slow but healthy
//! connection survives (Linux only: that is where the options exist).
#![cfg(all(target_os = "linux", feature = "emulator"))]

mod support;

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;

use chunkwise::MediaCategory;
use chunkwise::emulator::{EmulatorConfig, FaultConfig};
use chunkwise::protocol::{ApiVersion, AppendEncoding};
use support::*;

/// reqwest 0.12.28 sets `TCP_USER_TIMEOUT` to 30 s by default; on Linux that killed pooled
/// connections that had earlier waited behind a slow bottleneck with the peer's window shut
/// (9 of about 290 APPENDs in 12 uploads failed with ETIMEDOUT on a fault-free 1 Mbit/s
/// link). The client must leave the option unset and keep TCP keepalive on.
#[tokio::test]
async fn client_sockets_have_keepalive_and_no_tcp_user_timeout() {
    let emu = emulator(EmulatorConfig::default(), FaultConfig::default()).await;
    // The engine keeps the client, and so its pooled connections, alive after the upload.
    let engine = engine(
        Arc::new(client(&emu, ApiVersion::V2, AppendEncoding::Raw)),
        512,
        2,
    );
    upload_checked(
        &emu,
        &engine,
        &data(2000, 1),
        spec("image/png", Some(MediaCategory::TweetImage)),
    )
    .await;

    // Find the client's end of the pooled connections among this process's descriptors
    // (the emulator's end has the client as its peer).
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable") {
        let Ok(fd) = entry
            .expect("a directory entry")
            .file_name()
            .to_string_lossy()
            .parse::<RawFd>()
        else {
            continue;
        };
        // SAFETY: `fd` was open when listed; another thread of the test runtime may close it
        // (and the number may be reused) before the calls below, which then fail or read
        // another socket's options; both only make the filter skip it, and the borrow ends
        // within this iteration without closing anything.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer != Some(emu.addr()) {
            continue;
        }
        assert_eq!(
            socket
                .tcp_user_timeout()
                .expect("TCP_USER_TIMEOUT readable"),
            None,
            "the client must not set TCP_USER_TIMEOUT"
        );
        assert!(socket.keepalive().expect("SO_KEEPALIVE readable"));
        checked += 1;
    }
    assert!(checked >= 1, "no client socket to the emulator was found");
}
