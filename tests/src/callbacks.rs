//! The callback channel of a registered test client (`crate::clients`), opened as the
//! client holding its key opens it (the channel is sealed with the client's channel key)
//! and read frame by frame, with bounded reads.
//!
//! Must not decide what a frame means: tests compare the frames.

use crate::clients::{refresh_epoch, test_client};
use crate::http::connect;
use dfs_common::codec;
use dfs_common::privacy::{Dir, Opener};
use dfs_common::proto::CallbackFrame;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An open callback channel.
pub struct CallbackChannel {
    stream: TcpStream,
    /// Bytes read and not yet taken apart (the chunked, sealed body).
    buf: Vec<u8>,
    opener: Opener,
    /// Opened bytes not yet decoded into a frame.
    plain: Vec<u8>,
}

impl CallbackChannel {
    /// Opens the channel of test client `n` of the server at `addr` (in the server's
    /// current epoch) and reads its `Hello`.
    pub fn open(addr: &str, n: u64) -> CallbackChannel {
        let prover = test_client(addr, n);
        let epoch = refresh_epoch(addr, n).expect("the server's epoch");
        let mut stream = connect(addr, Duration::from_secs(10)).expect("connect");
        let mut head = format!("GET /v1/callbacks HTTP/1.1\r\nhost: {addr}\r\n");
        for (k, v) in prover.headers("GET", "/v1/callbacks") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let got = stream.read(&mut chunk).expect("callback channel read");
            assert!(got > 0, "callback channel closed");
            buf.extend_from_slice(&chunk[..got]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 200"),
            "callback channel refused: {head}"
        );
        let nonce = head
            .lines()
            .find_map(|l| l.strip_prefix("x-dfs-channel-nonce:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .expect("channel nonce");
        buf.drain(..end + 4);
        let key = prover.channel_key(epoch);
        let mut channel = CallbackChannel {
            stream,
            buf,
            opener: Opener::new(&key, Dir::Response, nonce),
            plain: Vec::new(),
        };
        let hello = channel.next_frame();
        assert!(
            matches!(hello, CallbackFrame::Hello { .. }),
            "the channel's first frame: {hello:?}"
        );
        channel
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("callback channel read");
        assert!(n > 0, "callback channel closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next frame (the channel's body is chunked and sealed: one frame may span
    /// chunks and sealed frames). A read waits at most 10 s.
    pub fn next_frame(&mut self) -> CallbackFrame {
        loop {
            if let Some(frame) = codec::take_frame::<CallbackFrame>(&mut self.plain).unwrap() {
                return frame;
            }
            while let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.buf[..eol]).unwrap().trim();
                let n = usize::from_str_radix(size, 16).unwrap();
                if self.buf.len() < eol + 2 + n + 2 {
                    break;
                }
                let sealed = self.buf[eol + 2..eol + 2 + n].to_vec();
                self.buf.drain(..eol + 2 + n + 2);
                let opened = self.opener.push(&sealed).expect("the channel opens");
                self.plain.extend_from_slice(&opened);
                if let Some(frame) = codec::take_frame::<CallbackFrame>(&mut self.plain).unwrap() {
                    return frame;
                }
            }
            self.fill();
        }
    }

    /// The next frame that is not a heartbeat.
    pub fn next_change(&mut self) -> CallbackFrame {
        loop {
            match self.next_frame() {
                CallbackFrame::Heartbeat => continue,
                f => return f,
            }
        }
    }
}
