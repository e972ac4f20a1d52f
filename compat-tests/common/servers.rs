//! Small network helpers of the tests: a UDP responder on a thread of its
//! own, and an HTTP `GET /` retried while a server comes up.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Answers datagrams until dropped. `bind` runs on the server's thread
/// (so it may enter a container's namespace first); `respond` maps each
/// datagram to its reply, if any.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpServer {
    pub fn start(
        bind: impl FnOnce() -> UdpSocket + Send + 'static,
        respond: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> UdpServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let s = bind();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    if let Some(reply) = respond(&buf[..n]) {
                        let _ = s.send_to(&reply, from);
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("UDP server ready");
        UdpServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /` on `addr`, retried for 10 s while the server (in a container,
/// giving no sign of being ready) comes up.
pub fn http_get(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut body = None;
    super::wait_until(Duration::from_secs(10), || {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        if out.starts_with("HTTP/1.") {
            body = Some(out);
            return true;
        }
        false
    });
    body
}
