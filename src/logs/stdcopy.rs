//! Docker's "stdcopy" framing, which carries several streams on one
//! connection (logs, attach and exec without a TTY): each frame is an
//! 8-byte header `[stream, 0, 0, 0, size as u32 big-endian]` and `size`
//! bytes of payload. Stream 0 is stdin, 1 stdout, 2 stderr, 3 a system
//! error (the daemon's own message, ending the client's copy).
//!
//! dockerd writes one frame per write; we do the same but cut payloads
//! above [`MAX_FRAME`] so that no client has to buffer more than that.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Length of a frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload we put in one frame.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest frame the [`Demuxer`] accepts by default (dockerd's client
/// has no limit; ours bounds memory against a hostile peer).
pub const DEFAULT_MAX_ACCEPTED: usize = 64 << 20;

/// The stream a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamId {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// An error from the daemon itself.
    Systemerr = 3,
}

impl StreamId {
    /// The header byte back to a stream, if it is one.
    pub fn from_byte(b: u8) -> Option<StreamId> {
        match b {
            0 => Some(StreamId::Stdin),
            1 => Some(StreamId::Stdout),
            2 => Some(StreamId::Stderr),
            3 => Some(StreamId::Systemerr),
            _ => None,
        }
    }
}

impl From<crate::logs::Stream> for StreamId {
    fn from(s: crate::logs::Stream) -> Self {
        match s {
            crate::logs::Stream::Stdout => StreamId::Stdout,
            crate::logs::Stream::Stderr => StreamId::Stderr,
        }
    }
}

/// `payload` as frames of `stream` (none for an empty payload).
pub fn encode(stream: StreamId, payload: &[u8]) -> Bytes {
    let frames = payload.len().div_ceil(MAX_FRAME);
    let mut out = BytesMut::with_capacity(payload.len() + frames * HEADER_LEN);
    encode_into(stream, payload, &mut out);
    out.freeze()
}

/// Appends `payload` as frames of `stream` to `out`.
pub fn encode_into(stream: StreamId, payload: &[u8], out: &mut BytesMut) {
    for chunk in payload.chunks(MAX_FRAME) {
        put_header(out, stream, chunk.len());
        out.put_slice(chunk);
    }
}

/// Appends one frame whose payload is `parts` concatenated (a timestamp
/// prefix and a line, say) without joining them first; falls back to
/// [`encode_into`] for payloads above [`MAX_FRAME`].
pub fn encode_parts_into(stream: StreamId, parts: &[&[u8]], out: &mut BytesMut) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len == 0 {
        return;
    }
    if len > MAX_FRAME {
        encode_into(stream, &parts.concat(), out);
        return;
    }
    out.reserve(HEADER_LEN + len);
    put_header(out, stream, len);
    for p in parts {
        out.put_slice(p);
    }
}

/// Payload size up to which [`FrameJoiner`] grows a frame.
pub const JOIN_LIMIT: usize = 32 << 10;

/// Appends payloads as frames, growing the last frame while the stream
/// stays the same (up to [`JOIN_LIMIT`]). Readers demultiplex the result
/// exactly as a frame per payload, but clients such as the docker CLI spend
/// most of a large log's time per frame, so fewer frames read much faster.
#[derive(Debug, Default)]
pub struct FrameJoiner {
    /// Where the last frame written to the current buffer starts.
    last: Option<(usize, StreamId)>,
}

impl FrameJoiner {
    /// Forgets the last frame (call when starting a new buffer).
    pub fn reset(&mut self) {
        self.last = None;
    }

    pub fn push_parts(&mut self, stream: StreamId, parts: &[&[u8]], out: &mut BytesMut) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 {
            return;
        }
        if let Some((at, s)) = self.last {
            let header = at..at + HEADER_LEN;
            let have = out.get(header.clone()).map_or(usize::MAX, |h| {
                u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize
            });
            // Only while that frame is still the buffer's last one.
            if s == stream && at + HEADER_LEN + have == out.len() && have + len <= JOIN_LIMIT {
                for p in parts {
                    out.put_slice(p);
                }
                out[at + 4..at + 8].copy_from_slice(&((have + len) as u32).to_be_bytes());
                return;
            }
        }
        let at = out.len();
        encode_parts_into(stream, parts, out);
        self.last = (len <= JOIN_LIMIT).then_some((at, stream));
    }
}

fn put_header(out: &mut BytesMut, stream: StreamId, len: usize) {
    out.put_u8(stream as u8);
    out.put_slice(&[0, 0, 0]);
    // len <= MAX_FRAME, far below u32::MAX.
    out.put_u32(len as u32);
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub stream: StreamId,
    pub payload: Bytes,
}

/// Errors of the [`Demuxer`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DemuxError {
    /// A header whose stream byte is not 0-3 (dockerd's client words it so).
    #[error("Unrecognized input header: {0}")]
    InvalidHeader(u8),
    /// A frame larger than the demuxer accepts.
    #[error("stdcopy frame of {0} bytes is too large")]
    FrameTooLarge(usize),
    /// The input ended inside a frame.
    #[error("unexpected end of stream inside a stdcopy frame ({0} bytes left over)")]
    Truncated(usize),
}

/// Splits a framed byte stream back into frames, whatever the chunk
/// boundaries: [`push`](Self::push) bytes as they arrive, then take
/// frames with [`next_frame`](Self::next_frame) until it returns `None`.
#[derive(Debug)]
pub struct Demuxer {
    buf: BytesMut,
    max_frame: usize,
    failed: Option<DemuxError>,
}

impl Default for Demuxer {
    fn default() -> Self {
        Demuxer::new()
    }
}

impl Demuxer {
    pub fn new() -> Demuxer {
        Demuxer::with_max_frame(DEFAULT_MAX_ACCEPTED)
    }

    /// A demuxer refusing frames above `max_frame` bytes.
    pub fn with_max_frame(max_frame: usize) -> Demuxer {
        Demuxer {
            buf: BytesMut::new(),
            max_frame,
            failed: None,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After
    /// an error the demuxer keeps returning it: the stream has lost sync.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DemuxError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let Some(stream) = StreamId::from_byte(self.buf[0]) else {
            return Err(self.fail(DemuxError::InvalidHeader(self.buf[0])));
        };
        let size =
            u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if size > self.max_frame {
            return Err(self.fail(DemuxError::FrameTooLarge(size)));
        }
        if self.buf.len() < HEADER_LEN + size {
            self.buf.reserve(HEADER_LEN + size - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(size).freeze();
        Ok(Some(Frame { stream, payload }))
    }

    /// Call at end of input: an error if a frame was cut short.
    pub fn finish(&self) -> Result<(), DemuxError> {
        match (&self.failed, self.buf.len()) {
            (Some(e), _) => Err(e.clone()),
            (None, 0) => Ok(()),
            (None, n) => Err(DemuxError::Truncated(n)),
        }
    }

    fn fail(&mut self, e: DemuxError) -> DemuxError {
        self.buf.clear();
        self.failed = Some(e.clone());
        e
    }
}

/// Decodes a whole framed buffer (tests and small clients).
pub fn decode_all(data: &[u8]) -> Result<Vec<Frame>, DemuxError> {
    let mut d = Demuxer::new();
    d.push(data);
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame()? {
        frames.push(f);
    }
    d.finish()?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn header_layout() {
        let b = encode(StreamId::Stderr, b"hello");
        assert_eq!(&b[..], b"\x02\x00\x00\x00\x00\x00\x00\x05hello");
        assert!(encode(StreamId::Stdout, b"").is_empty());
        let big = vec![7u8; MAX_FRAME * 2 + 3];
        let frames = decode_all(&encode(StreamId::Stdout, &big)).unwrap();
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        assert_eq!(sizes, [MAX_FRAME, MAX_FRAME, 3]);
        let mut out = BytesMut::new();
        encode_parts_into(StreamId::Stdout, &[b"ts ", b"line\n"], &mut out);
        assert_eq!(&out[..], b"\x01\x00\x00\x00\x00\x00\x00\x08ts line\n");
    }

    #[test]
    fn round_trip_with_random_chunking() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut sent = Vec::new();
        let mut wire = BytesMut::new();
        for i in 0..500 {
            let stream = [
                StreamId::Stdin,
                StreamId::Stdout,
                StreamId::Stderr,
                StreamId::Systemerr,
            ][i % 4];
            let len = match i % 7 {
                0 => rng.random_range(0..3),
                1 => rng.random_range(30_000..70_000),
                _ => rng.random_range(1..300),
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            encode_into(stream, &payload, &mut wire);
            if !payload.is_empty() {
                sent.push((stream, payload));
            }
        }
        let wire = wire.freeze();
        for _ in 0..20 {
            let mut d = Demuxer::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len().min(20_000));
                d.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = d.next_frame().unwrap() {
                    got.push((f.stream, f.payload.to_vec()));
                }
            }
            d.finish().unwrap();
            assert_eq!(got, sent);
        }
    }

    #[test]
    fn bad_input() {
        assert_eq!(
            decode_all(b"\x05\x00\x00\x00\x00\x00\x00\x01x")
                .unwrap_err()
                .to_string(),
            "Unrecognized input header: 5"
        );
        assert_eq!(
            decode_all(b"\x01\x00\x00\x00\x00\x00\x00\x05abc"),
            Err(DemuxError::Truncated(11))
        );
        let mut d = Demuxer::with_max_frame(4);
        d.push(b"\x01\x00\x00\x00\x00\x00\x00\x05abcde");
        assert_eq!(d.next_frame(), Err(DemuxError::FrameTooLarge(5)));
        assert_eq!(d.next_frame(), Err(DemuxError::FrameTooLarge(5)));
        // A partial header is just "need more".
        let mut d = Demuxer::new();
        d.push(b"\x01\x00");
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn joined_frames_read_back_the_same() {
        let mut out = BytesMut::new();
        let mut j = FrameJoiner::default();
        j.push_parts(StreamId::Stdout, &[b"a\n"], &mut out);
        j.push_parts(StreamId::Stdout, &[b"ts ", b"b\n"], &mut out);
        j.push_parts(StreamId::Stderr, &[b"e\n"], &mut out);
        j.push_parts(StreamId::Stdout, &[b"c\n"], &mut out);
        assert_eq!(
            &out[..],
            b"\x01\x00\x00\x00\x00\x00\x00\x07a\nts b\n\x02\x00\x00\x00\x00\x00\x00\x02e\n\x01\x00\x00\x00\x00\x00\x00\x02c\n"
        );
        let big = vec![b'x'; JOIN_LIMIT];
        let mut out = BytesMut::new();
        j.reset();
        j.push_parts(StreamId::Stdout, &[b"a"], &mut out);
        j.push_parts(StreamId::Stdout, &[&big], &mut out);
        assert_eq!(
            out.len(),
            2 * HEADER_LEN + 1 + JOIN_LIMIT,
            "no frame above the limit"
        );
    }
}
