//! Real traffic from inside pods: ping, TCP/UDP servers, clients, benchmarks.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::spawn_in;
use crate::topology::{log, Node, Pod};
use crate::{cmd, in_netns, Error};

/// How often server threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Write size of [`Pod::tcp_bulk`].
const BULK_CHUNK: usize = 64 * 1024;

/// Outcome of [`Pod::ping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingResult {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    bytes: AtomicU64,
}

/// A server running inside a pod. Dropping it stops the listener, closes
/// open connections and joins all of its threads.
#[derive(Debug)]
pub struct ServerGuard {
    local_addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerGuard {
    /// Address the server is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Port the server listens on.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// TCP: connections accepted so far. UDP: datagrams received so far.
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// Payload bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log(format_args!(
                    "lumen-testbed: server thread on {} panicked",
                    self.local_addr
                ));
            }
        }
    }
}

#[derive(Clone, Copy)]
enum TcpMode {
    Echo,
    Sink,
}

/// The wildcard address to listen on: dual-stack `[::]`, falling back to
/// `0.0.0.0` on kernels without IPv6.
fn wildcard(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
    ]
}

/// Where a server runs, for thread names and error messages.
struct Place<'a> {
    netns: &'a str,
    /// E.g. `pod web` or `node node1`.
    what: String,
}

impl Place<'_> {
    fn pod(pod: &Pod) -> Place<'_> {
        Place {
            netns: &pod.netns,
            what: format!("pod {}", pod.name),
        }
    }
}

fn bind_tcp(place: &Place<'_>, port: u16) -> Result<TcpListener, Error> {
    in_netns(place.netns, || TcpListener::bind(&wildcard(port)[..]))?
        .map_err(|e| Error::sys(format!("listening on TCP port {port} in {}", place.what), e))
}

fn bind_udp(pod: &Pod, port: u16) -> Result<UdpSocket, Error> {
    in_netns(&pod.netns, || UdpSocket::bind(&wildcard(port)[..]))?
        .map_err(|e| Error::sys(format!("binding UDP port {port} in pod {}", pod.name), e))
}

fn start_tcp_server(place: &Place<'_>, port: u16, mode: TcpMode) -> Result<ServerGuard, Error> {
    let listener = bind_tcp(place, port)?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::sys("reading listener address", e))?;
    // Non-blocking accept lets the thread notice the stop flag.
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::sys("making listener non-blocking", e))?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name(format!("tcp {}:{}", place.what, local_addr.port()))
        .spawn({
            let (stats, stop) = (stats.clone(), stop.clone());
            move || accept_loop(listener, mode, &stats, &stop)
        })
        .map_err(|e| Error::sys("spawning server thread", e))?;
    Ok(ServerGuard {
        local_addr,
        stats,
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: TcpListener, mode: TcpMode, stats: &Arc<Stats>, stop: &AtomicBool) {
    let mut conns: Vec<(JoinHandle<()>, TcpStream)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                conns.retain(|(handle, _)| !handle.is_finished());
                let (Ok(()), Ok(ours)) = (stream.set_nonblocking(false), stream.try_clone()) else {
                    continue;
                };
                let stats = stats.clone();
                let spawned = std::thread::Builder::new()
                    .name("tcp conn".into())
                    .spawn(move || serve_conn(stream, mode, &stats));
                if let Ok(handle) = spawned {
                    conns.push((handle, ours));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            // Transient accept errors (e.g. ECONNABORTED) must not kill the server.
            Err(_) => std::thread::sleep(POLL),
        }
    }
    // Shutting a socket down wakes the handler blocked in read().
    for (_, stream) in &conns {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for (handle, _) in conns {
        let _ = handle.join();
    }
}

fn serve_conn(mut stream: TcpStream, mode: TcpMode, stats: &Stats) {
    let mut buf = vec![0u8; BULK_CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if let TcpMode::Echo = mode {
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    }
}

fn udp_echo_loop(socket: UdpSocket, stats: &Stats, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                let _ = socket.send_to(&buf[..n], peer);
            }
            // Time-outs (to check `stop`) and ICMP-induced errors: keep going.
            Err(_) => continue,
        }
    }
}

/// Connects from inside `netns`; the returned stream may be used anywhere.
fn connect(pod: &Pod, dst: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    in_netns(&pod.netns, || TcpStream::connect_timeout(&dst, timeout))?
        .map_err(|e| Error::io(format!("TCP connect from pod {} to {dst}", pod.name), e, timeout))
}

/// The unspecified address of `dst`'s family, for a client socket.
fn any_for(dst: SocketAddr) -> SocketAddr {
    match dst {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn parse_ping(cmd: &str, output: &str) -> Result<PingResult, Error> {
    // "3 packets transmitted, 3 received, 0% packet loss, time 402ms"
    let parsed = output.lines().find_map(|line| {
        let (sent, rest) = line.split_once(" packets transmitted, ")?;
        let received = rest.split_once(" received")?.0;
        Some(PingResult {
            sent: sent.trim().parse().ok()?,
            received: received.trim().parse().ok()?,
        })
    });
    parsed.ok_or_else(|| Error::Parse {
        cmd: cmd.into(),
        output: output.into(),
    })
}

impl Node {
    /// Starts a TCP echo server in the node's netns on `[::]:port` (dual
    /// stack; port 0 picks one), so it answers on every node address,
    /// the fabric's ([`Node::address`]) included.
    pub fn tcp_echo_server(&self, port: u16) -> Result<ServerGuard, Error> {
        let place = Place {
            netns: &self.netns,
            what: format!("node {}", self.name),
        };
        start_tcp_server(&place, port, TcpMode::Echo)
    }
}

impl Pod {
    /// Pings `dst` `count` times, 0.2 s apart, from inside the pod with the
    /// `ping` binary; `timeout` is how long to wait for each reply. Lost
    /// replies are not an error: compare `sent` and `received`.
    pub fn ping(&self, dst: IpAddr, count: u32, timeout: Duration) -> Result<PingResult, Error> {
        let wait = timeout.as_secs_f64().max(0.001);
        let mut ping = Command::new("ping");
        ping.arg(if dst.is_ipv4() { "-4" } else { "-6" })
            .args(["-n", "-q", "-i", "0.2", "-c", &count.to_string()])
            .args(["-W", &format!("{wait:.3}"), &dst.to_string()])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("{} (in netns {})", cmd::display(&ping), self.netns);
        let mut process = spawn_in(&self.netns, ping)?;
        // ping stops by itself after the last reply or the last -W wait.
        let limit = Duration::from_secs_f64(0.2 * f64::from(count) + wait) + Duration::from_secs(5);
        let Some(status) = process.wait_timeout(limit)? else {
            return Err(Error::Timeout {
                what: shown,
                after: limit,
            });
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = process.take_stdout() {
            let _ = out.read_to_string(&mut stdout);
        }
        if let Some(mut err) = process.take_stderr() {
            let _ = err.read_to_string(&mut stderr);
        }
        // Exit 1 means "some replies missing", which the summary reports.
        match status.code() {
            Some(0 | 1) => parse_ping(&shown, &stdout),
            _ => Err(Error::Command {
                cmd: shown,
                status: status.to_string(),
                stderr: stderr.trim().to_string(),
            }),
        }
    }

    /// Starts a TCP server on `[::]:port` (dual stack; port 0 picks one)
    /// that echoes everything it reads, one thread per connection.
    pub fn tcp_echo_server(&self, port: u16) -> Result<ServerGuard, Error> {
        start_tcp_server(&Place::pod(self), port, TcpMode::Echo)
    }

    /// Starts a TCP server on `[::]:port` that reads and discards, counting
    /// bytes (see [`ServerGuard::bytes_received`]); the peer of
    /// [`Pod::tcp_bulk`].
    pub fn tcp_sink_server(&self, port: u16) -> Result<ServerGuard, Error> {
        start_tcp_server(&Place::pod(self), port, TcpMode::Sink)
    }

    /// Starts a UDP server on `[::]:port` (dual stack) that echoes every
    /// datagram back to its sender.
    pub fn udp_echo_server(&self, port: u16) -> Result<ServerGuard, Error> {
        let socket = bind_udp(self, port)?;
        let local_addr = socket
            .local_addr()
            .map_err(|e| Error::sys("reading socket address", e))?;
        socket
            .set_read_timeout(Some(POLL))
            .map_err(|e| Error::sys("setting socket timeout", e))?;
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("udp {}:{}", self.name, local_addr.port()))
            .spawn({
                let (stats, stop) = (stats.clone(), stop.clone());
                move || udp_echo_loop(socket, &stats, &stop)
            })
            .map_err(|e| Error::sys("spawning server thread", e))?;
        Ok(ServerGuard {
            local_addr,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// Opens a TCP connection from inside the pod.
    pub fn tcp_connect(&self, dst: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
        connect(self, dst, timeout)
    }

    /// Connects to `dst`, sends `payload`, reads back as many bytes (the
    /// echo) and closes. Every step is bounded by `timeout`.
    pub fn tcp_request(&self, dst: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>, Error> {
        let mut stream = connect(self, dst, timeout)?;
        let what = format!("TCP request from pod {} to {dst}", self.name);
        let err = |e| Error::io(what.clone(), e, timeout);
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        stream.set_write_timeout(Some(timeout)).map_err(err)?;
        stream.write_all(payload).map_err(err)?;
        let mut reply = vec![0u8; payload.len()];
        stream.read_exact(&mut reply).map_err(err)?;
        let _ = stream.shutdown(Shutdown::Both);
        Ok(reply)
    }

    /// Sends one datagram to `dst` and returns the first reply from `dst`;
    /// [`Error::Timeout`] if none arrives within `timeout`.
    pub fn udp_request(&self, dst: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Vec<u8>, Error> {
        let what = format!("UDP request from pod {} to {dst}", self.name);
        let socket =
            in_netns(&self.netns, || UdpSocket::bind(any_for(dst)))?.map_err(|e| Error::sys(what.clone(), e))?;
        socket.send_to(payload, dst).map_err(|e| Error::sys(what.clone(), e))?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { what, after: timeout });
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(|e| Error::sys(what.clone(), e))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == dst => return Ok(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(e) => return Err(Error::io(what, e, timeout)),
            }
        }
    }

    /// Sends `count` datagrams to `dst` as fast as possible without waiting
    /// for anything; returns how many `send_to` calls succeeded.
    pub fn udp_send(&self, dst: SocketAddr, payload: &[u8], count: u64) -> Result<u64, Error> {
        let socket = in_netns(&self.netns, || UdpSocket::bind(any_for(dst)))?
            .map_err(|e| Error::sys(format!("UDP socket in pod {}", self.name), e))?;
        Ok((0..count).filter(|_| socket.send_to(payload, dst).is_ok()).count() as u64)
    }

    /// TCP request/response benchmark against an echo server: one
    /// persistent connection with `TCP_NODELAY`, 1-byte request, 1-byte
    /// reply, for `duration`. Returns transactions per second.
    pub fn tcp_rr(&self, dst: SocketAddr, duration: Duration) -> Result<f64, Error> {
        let timeout = Duration::from_secs(5);
        let mut stream = connect(self, dst, timeout)?;
        let what = format!("TCP_RR from pod {} to {dst}", self.name);
        let err = |e| Error::io(what.clone(), e, timeout);
        stream.set_nodelay(true).map_err(err)?;
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        stream.set_write_timeout(Some(timeout)).map_err(err)?;
        let mut byte = [0u8; 1];
        let mut transactions = 0u64;
        let start = Instant::now();
        while start.elapsed() < duration {
            stream.write_all(&byte).map_err(err)?;
            stream.read_exact(&mut byte).map_err(err)?;
            transactions += 1;
        }
        Ok(transactions as f64 / start.elapsed().as_secs_f64())
    }

    /// TCP throughput benchmark against a sink server: 64 KiB writes for
    /// `duration`. Returns bits per second, counted from bytes written.
    pub fn tcp_bulk(&self, dst: SocketAddr, duration: Duration) -> Result<f64, Error> {
        let timeout = Duration::from_secs(5);
        let mut stream = connect(self, dst, timeout)?;
        let what = format!("TCP bulk from pod {} to {dst}", self.name);
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| Error::sys(what.clone(), e))?;
        let chunk = vec![0x5au8; BULK_CHUNK];
        let mut written = 0u64;
        let start = Instant::now();
        while start.elapsed() < duration {
            written += stream.write(&chunk).map_err(|e| Error::io(what.clone(), e, timeout))? as u64;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let _ = stream.shutdown(Shutdown::Write);
        Ok(written as f64 * 8.0 / elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summaries() {
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\n--- 10.0.0.2 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 404ms\nrtt min/avg/max/mdev = 0.030/0.040/0.050/0.010 ms\n";
        assert_eq!(parse_ping("ping", out).unwrap(), PingResult { sent: 3, received: 2 });
        let errors = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n";
        assert_eq!(parse_ping("ping", errors).unwrap(), PingResult { sent: 3, received: 0 });
        assert!(matches!(parse_ping("ping", "garbage"), Err(Error::Parse { .. })));
    }
}
