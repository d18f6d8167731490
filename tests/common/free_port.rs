//! A free TCP port for a test's server; shared by the workspace crates' test helpers
//! (`tests/common` and `sinks/tests/support` include this file).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// A TCP port free on 127.0.0.1 right now, and not handed out before in this
/// test process: tests run side by side, and the kernel may offer the same
/// free port to two of them (or twice to one) before either binds it, which
/// would send one test's requests to another's pipeline.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.insert(port) {
            return port;
        }
    }
}
