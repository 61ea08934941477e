//! The bincode codec (one configuration for every body), frames on the callback channel
//! (4-byte big-endian length + bincode), and hex.

use crate::error::FsError;
use serde::{de::DeserializeOwned, Serialize};

/// Largest bincode message either side decodes; protects against hostile lengths.
pub const MAX_MESSAGE: usize = 64 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE>()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).expect("bincode encoding of owned data")
}

/// Decodes a whole message; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FsError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| FsError::BadRequest(format!("undecodable body: {e}")))?;
    if used != bytes.len() {
        return Err(FsError::BadRequest(format!(
            "{} trailing bytes after message",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// A frame: length prefix then the encoded message.
pub fn frame<T: Serialize>(value: &T) -> Vec<u8> {
    let body = encode(value);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Takes one whole frame off the front of `buf`, if one is there.
pub fn take_frame<T: DeserializeOwned>(buf: &mut Vec<u8>) -> Result<Option<T>, FsError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_MESSAGE {
        return Err(FsError::BadRequest(format!("frame of {len} bytes")));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let value = decode(&buf[4..4 + len])?;
    buf.drain(..4 + len);
    Ok(Some(value))
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Encodes a value for an HTTP header: hex of its bincode.
pub fn to_header<T: Serialize>(value: &T) -> String {
    to_hex(&encode(value))
}

pub fn from_header<T: DeserializeOwned>(s: &str) -> Result<T, FsError> {
    let bytes = from_hex(s).ok_or_else(|| FsError::BadRequest("header is not hex".into()))?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CallbackFrame;

    #[test]
    fn frames_split_anywhere_reassemble() {
        let a = CallbackFrame::Break { ino: 42 };
        let b = CallbackFrame::EntryBreak {
            dir: 1,
            name: b"x y".to_vec(),
        };
        let mut wire = frame(&a);
        wire.extend(frame(&b));
        for cut in 0..wire.len() {
            let mut buf = wire[..cut].to_vec();
            let mut got: Vec<CallbackFrame> = Vec::new();
            while let Some(f) = take_frame(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = take_frame(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![a.clone(), b.clone()]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn garbage_is_a_bad_request_not_a_panic() {
        let r: Result<crate::proto::DirRequest, _> = decode(&[0xff; 40]);
        assert!(matches!(r, Err(FsError::BadRequest(_))));
        let mut buf = vec![0xff, 0xff, 0xff, 0xff, 0];
        assert!(take_frame::<CallbackFrame>(&mut buf).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&CallbackFrame::Heartbeat);
        bytes.push(0);
        assert!(decode::<CallbackFrame>(&bytes).is_err());
    }
}
