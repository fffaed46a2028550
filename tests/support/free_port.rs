//! Loopback ports for the test servers. They are picked below Linux's ephemeral range
//! (32768-60999), which outgoing connections draw from: a port the OS hands out for `:0`
//! can be taken by a client socket between the pick and the server's bind, and with many
//! tests and Envoys running in parallel that happens. Included by every harness.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const SPAN: u32 = 12_000;
/// Coprime with `SPAN`, so the walk visits every port of the range once.
const STRIDE: u32 = 7;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A port that nothing listens on now, distinct from every earlier pick of this process.
pub fn pick() -> u16 {
    // A test binary may include this file twice (two harnesses); each copy has its own
    // counter, so the counter's address spreads the copies' walks apart.
    let copy = (&NEXT as *const AtomicU32 as usize as u32).rotate_left(13);
    let seed = (std::process::id() ^ copy) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (seed + n.wrapping_mul(STRIDE)) % SPAN)
            .expect("range fits in u16");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}
