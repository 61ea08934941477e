//! Raw TCP connections for the tests of connection limits: connections from a chosen
//! loopback source address (any 127.x.y.z works on Linux without set-up, so one test can
//! be many peers), whether the server has closed one, and a process's open descriptors.
//!
//! Must not keep a connection open beyond its `TcpStream` (dropping it closes it).

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

/// A TCP connection from `src` (port chosen by the kernel) to `dst`.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    let sockaddr = |a: &SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with valid sockaddr_in values; on success
    // its descriptor is handed to the TcpStream, which owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(&SocketAddrV4::new(src, 0));
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(&dst);
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// What reading a connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read yet: the server keeps it open.
    Open,
    /// The server closed it (end of stream or reset), after sending these bytes.
    Closed(Vec<u8>),
}

/// Reads what the server sends on `s` until it closes it, or until `wait` passes without
/// a byte (then it is open).
pub fn peek_closed(s: &mut TcpStream, wait: Duration) -> Peek {
    let _ = s.set_read_timeout(Some(wait));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Peek::Closed(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Peek::Open
            }
            Err(_) => return Peek::Closed(got),
        }
    }
}

/// How many descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}
