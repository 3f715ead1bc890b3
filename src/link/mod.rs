//! A trace-driven link emulator: a loopback TCP proxy that replays cellular links.
