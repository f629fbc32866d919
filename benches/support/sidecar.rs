//! Starting the release binary for a bench: a free loopback port, a key, and a wait (bounded)
//! until it accepts connections.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `bin` listening on a free loopback port with `key` and `args`; returns the child and
/// its base URL. Panics (after killing it) if it does not accept connections within 10 s.
pub fn start(bin: &str, key: &str, args: &[&str]) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("SESSION_API_KEY", key)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the sidecar");
    let up = (0..1000).any(|_| {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(10));
        }
        ok
    });
    if !up {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the sidecar did not start");
    }
    (child, format!("http://127.0.0.1:{port}"))
}
