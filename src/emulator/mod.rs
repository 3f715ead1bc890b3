//! A local emulator of X's media upload endpoints (v1.1 and v2), for tests, benches and the demo.
