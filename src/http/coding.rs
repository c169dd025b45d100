//! HTTP content codings for request and response bodies.
//!
//! This module knows the codings chronoshard speaks on its REST API (`gzip`, `deflate`, `br`,
//! `zstd`, `snappy`, `lz4` and `identity`). It parses `Content-Encoding` request headers, decodes
//! request bodies, encodes response bodies and negotiates a response coding from
//! `Accept-Encoding`.
//!
//! # Invariants
//!
//! * **Decoded output never exceeds the caller's bound.** [`decode_body`] reads every decoding
//!   step through a bounded loop that stops as soon as one byte more than `limit_bytes` has been
//!   produced and then fails with [`CodingError::TooLarge`]. The output buffer grows
//!   geometrically but its capacity is capped at `limit_bytes`, so a decompression bomb costs at
//!   most `limit_bytes` of output memory, plus the decoder's own working state, which does not
//!   depend on the body: tens of KiB for gzip and deflate, under 200 KiB for snappy, at most
//!   about 12 MiB for LZ4 frames (4 MiB blocks), at most 16 MiB for brotli (its largest
//!   standard window) and, for zstd, a window of at most 8 MiB or `limit_bytes` rounded up to a
//!   power of two, whichever is larger. Stacked codings hold at most two intermediate buffers
//!   (each within the bound) at a time.
//! * **Every decoder must consume its input exactly.** Truncated input, trailing garbage and an
//!   empty body under a non-identity coding are [`CodingError::Decode`] errors, never a silently
//!   shortened body. The exception is snappy: its framing has no end marker, so an empty body is
//!   the empty stream (which is what `snap` writes for empty input) and a stream cut exactly at a
//!   chunk boundary is indistinguishable from a complete one.
//! * **Encoding cannot silently lose data.** [`encode_body`] returns a `Result`; it never falls
//!   back to an empty or partial body.
//!
//! # Response compression levels
//!
//! Responses are compressed for throughput rather than ratio: gzip and deflate use level
//! [`GZIP_LEVEL`], brotli quality [`BROTLI_QUALITY`] with window [`BROTLI_LGWIN`], zstd level
//! [`ZSTD_LEVEL`], snappy and LZ4 use their framed formats (the LZ4 frame carries a content
//! checksum, like the `lz4` command line tool writes by default).

use std::fmt;
use std::io::{self, Read, Write};

/// flate2 level for gzip and deflate (zlib) responses. On JSON query results (miniz_oxide
/// backend) level 4 compressed about twice as fast as level 6 for about 6% less ratio.
pub const GZIP_LEVEL: u32 = 4;
/// Brotli quality for responses (0..=11).
pub const BROTLI_QUALITY: i32 = 4;
/// Brotli window log for responses (4 MiB window).
pub const BROTLI_LGWIN: i32 = 22;
/// Zstandard level for responses (zstd's own default).
pub const ZSTD_LEVEL: i32 = 3;

/// Size of one bounded read while decoding.
const READ_CHUNK: usize = 64 * 1024;
/// Smallest zstd window a decoder accepts whatever the limit: 8 MiB, the window RFC 8878
/// §3.1.1.1.2 recommends every decoder to support.
const ZSTD_MIN_WINDOW_LOG: u32 = 23;
/// Largest zstd window a decoder ever accepts (1 GiB, valid on 32- and 64-bit targets).
const ZSTD_MAX_WINDOW_LOG: u32 = 30;
/// Magic number of the legacy LZ4 format (`lz4 -l`), which has no end marker.
const LZ4_LEGACY_MAGIC: [u8; 4] = 0x184C_2102_u32.to_le_bytes();

/// A content coding as named in `Content-Encoding` and `Accept-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No transformation.
    Identity,
    /// gzip (RFC 1952), possibly several concatenated members.
    Gzip,
    /// zlib-wrapped DEFLATE (RFC 1950); raw DEFLATE (RFC 1951) is also accepted on input.
    Deflate,
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878).
    Zstd,
    /// Snappy, framed format.
    Snappy,
    /// LZ4, frame format.
    Lz4,
}

impl Coding {
    /// Token as written in headers: "identity", "gzip", "deflate", "br", "zstd", "snappy", "lz4".
    pub fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Snappy => "snappy",
            Coding::Lz4 => "lz4",
        }
    }

    /// Case-insensitive token (surrounding whitespace ignored) to `Coding`; "x-gzip" is gzip.
    /// Unknown tokens give `None`.
    pub fn from_token(token: &str) -> Option<Coding> {
        const TOKENS: [(&str, Coding); 8] = [
            ("identity", Coding::Identity),
            ("gzip", Coding::Gzip),
            ("x-gzip", Coding::Gzip),
            ("deflate", Coding::Deflate),
            ("br", Coding::Br),
            ("zstd", Coding::Zstd),
            ("snappy", Coding::Snappy),
            ("lz4", Coding::Lz4),
        ];
        let token = token.trim();
        TOKENS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|&(_, coding)| coding)
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of this module. Suggested HTTP mapping: `Unsupported` 415, `Decode` 400, `TooLarge`
/// 413, `NotAcceptable` 400 (the /api/v1/sql contract) or 406, `Encode` 500.
#[derive(Debug, thiserror::Error)]
pub enum CodingError {
    /// A `Content-Encoding` header value that names a coding we do not support.
    #[error("content encoding not supported: {0}")]
    Unsupported(String),
    /// The body is not valid data in the named coding (corrupt, truncated, trailing garbage).
    #[error("decoding {coding} body failed: {source}")]
    Decode {
        coding: &'static str,
        source: io::Error,
    },
    /// Decoding would produce more than the caller's limit.
    #[error("body is larger than {limit_bytes} bytes after {coding} decoding")]
    TooLarge {
        coding: &'static str,
        limit_bytes: usize,
    },
    /// `Accept-Encoding` accepts none of the codings we offer.
    #[error("no acceptable response encoding in Accept-Encoding: {0}")]
    NotAcceptable(String),
    /// The encoder failed. Cannot happen when writing to memory; kept so that encoder errors are
    /// reported instead of being turned into a wrong body.
    #[error("encoding {coding} body failed: {source}")]
    Encode {
        coding: &'static str,
        source: io::Error,
    },
}

/// Parses a request `Content-Encoding` header value.
///
/// The value may be a comma list ("gzip, br") naming codings in the order they were applied; they
/// are returned in that order. Empty list elements and "identity" are dropped, so an empty or
/// blank value gives an empty vec. Any unknown token fails with
/// [`CodingError::Unsupported`] carrying the whole header value.
pub fn parse_content_encoding(value: &str) -> Result<Vec<Coding>, CodingError> {
    let mut codings = Vec::new();
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match Coding::from_token(token) {
            Some(Coding::Identity) => {}
            Some(coding) => codings.push(coding),
            None => return Err(CodingError::Unsupported(value.to_string())),
        }
    }
    Ok(codings)
}

/// Decodes `input` that had `codings` applied in order, undoing them in reverse.
///
/// The output of every step (and with no codings, the copy of `input`) is bounded by
/// `limit_bytes`: a step that would produce more fails with [`CodingError::TooLarge`] as soon
/// as byte `limit_bytes + 1` appears, without allocating beyond the bound. Invalid, truncated
/// or trailing data fails with [`CodingError::Decode`].
pub fn decode_body(
    codings: &[Coding],
    input: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, CodingError> {
    let Some((&last, earlier)) = codings.split_last() else {
        return decode_step(Coding::Identity, input, limit_bytes);
    };
    let mut body = decode_step(last, input, limit_bytes)?;
    for &coding in earlier.iter().rev() {
        body = decode_step(coding, &body, limit_bytes)?;
    }
    Ok(body)
}

/// Why one decoding step failed, before the coding name is attached.
#[derive(Debug)]
enum StepError {
    Io(io::Error),
    TooLarge,
}

impl From<io::Error> for StepError {
    fn from(err: io::Error) -> Self {
        StepError::Io(err)
    }
}

fn invalid(message: &'static str) -> StepError {
    StepError::Io(io::Error::new(io::ErrorKind::InvalidData, message))
}

fn truncated(message: &'static str) -> StepError {
    StepError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, message))
}

/// Undoes one coding.
fn decode_step(coding: Coding, input: &[u8], limit: usize) -> Result<Vec<u8>, CodingError> {
    let result = match coding {
        Coding::Identity if input.len() > limit => Err(StepError::TooLarge),
        Coding::Identity => Ok(input.to_vec()),
        // The snappy framing has no end marker and snap encodes empty input as nothing.
        Coding::Snappy if input.is_empty() => Ok(Vec::new()),
        _ if input.is_empty() => Err(truncated("empty body")),
        Coding::Gzip => decode_gzip(input, limit),
        Coding::Deflate => decode_deflate(input, limit),
        Coding::Br => decode_brotli(input, limit),
        Coding::Zstd => decode_zstd(input, limit),
        Coding::Snappy => decode_snappy(input, limit),
        Coding::Lz4 => decode_lz4(input, limit),
    };
    result.map_err(|err| match err {
        StepError::Io(source) => CodingError::Decode {
            coding: coding.name(),
            source,
        },
        StepError::TooLarge => CodingError::TooLarge {
            coding: coding.name(),
            limit_bytes: limit,
        },
    })
}

/// Appends everything `reader` yields to `out`, failing with `TooLarge` as soon as `out` would
/// exceed `limit` bytes. `out.capacity()` never grows beyond `max(limit, its initial capacity)`.
fn read_bounded<R: Read>(reader: &mut R, limit: usize, out: &mut Vec<u8>) -> Result<(), StepError> {
    loop {
        let start = out.len();
        if start >= limit {
            // Full: one more byte (rather than end of stream) means the body is too large.
            let mut probe = [0u8; 1];
            return match reader.read(&mut probe) {
                Ok(0) => Ok(()),
                Ok(_) => Err(StepError::TooLarge),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => Err(StepError::Io(err)),
            };
        }
        let room = (limit - start).min(READ_CHUNK);
        reserve_bounded(out, room, limit);
        out.resize(start + room, 0);
        let read = reader.read(&mut out[start..]);
        let produced = match &read {
            Ok(n) => (*n).min(room),
            Err(_) => 0,
        };
        out.truncate(start + produced);
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(StepError::Io(err)),
        }
    }
}

/// Makes room for `additional` more bytes, doubling capacity but never past `limit` (callers
/// guarantee `out.len() + additional <= limit`).
fn reserve_bounded(out: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = out.len().saturating_add(additional);
    if needed > out.capacity() {
        let target = out.capacity().saturating_mul(2).min(limit).max(needed);
        out.reserve_exact(target - out.len());
    }
}

/// Reads `reader` to its end within `limit`, returning the output and the reader.
fn drain<R: Read>(mut reader: R, limit: usize) -> Result<(Vec<u8>, R), StepError> {
    let mut out = Vec::new();
    read_bounded(&mut reader, limit, &mut out)?;
    Ok((out, reader))
}

/// Fails unless the decoder consumed all of its input.
fn ensure_consumed(rest: &[u8]) -> Result<(), StepError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            "trailing data after the end of the compressed stream",
        ))
    }
}

fn decode_gzip(input: &[u8], limit: usize) -> Result<Vec<u8>, StepError> {
    let (out, decoder) = drain(flate2::bufread::MultiGzDecoder::new(input), limit)?;
    ensure_consumed(decoder.get_ref())?;
    Ok(out)
}

/// True when `input` starts with a valid zlib (RFC 1950) header using DEFLATE.
fn has_zlib_header(input: &[u8]) -> bool {
    match input {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

fn decode_deflate(input: &[u8], limit: usize) -> Result<Vec<u8>, StepError> {
    if has_zlib_header(input) {
        let (out, decoder) = drain(flate2::bufread::ZlibDecoder::new(input), limit)?;
        ensure_consumed(decoder.get_ref())?;
        Ok(out)
    } else {
        let (out, decoder) = drain(flate2::bufread::DeflateDecoder::new(input), limit)?;
        ensure_consumed(decoder.get_ref())?;
        Ok(out)
    }
}

fn decode_brotli(input: &[u8], limit: usize) -> Result<Vec<u8>, StepError> {
    let (out, mut decoder) = drain(brotli::Decompressor::new(input, 4096), limit)?;
    // The decompressor reports bytes left in its own buffer only on the read after the one
    // that signalled the end of the stream.
    let mut probe = [0u8; 1];
    if decoder.read(&mut probe)? != 0 {
        return Err(invalid("data after the end of the brotli stream"));
    }
    ensure_consumed(decoder.get_ref())?;
    Ok(out)
}

/// Largest zstd window log accepted for `limit`: enough for any frame whose output fits in
/// `limit`, at least 8 MiB, at most 1 GiB.
fn zstd_window_log_max(limit: usize) -> u32 {
    let ceil_log2 = usize::BITS - limit.saturating_sub(1).leading_zeros();
    ceil_log2.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG)
}

/// True when the frame headers in `input` already declare more than `limit` bytes of content.
/// Frames without a declared size, and anything malformed, are left to the decoder.
fn zstd_declares_more_than(input: &[u8], limit: usize) -> bool {
    use zstd::zstd_safe;
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let mut declared = 0u64;
    let mut rest = input;
    while !rest.is_empty() {
        if let Ok(Some(size)) = zstd_safe::get_frame_content_size(rest) {
            declared = declared.saturating_add(size);
        }
        match zstd_safe::find_frame_compressed_size(rest) {
            Ok(len) if len > 0 && len <= rest.len() => rest = &rest[len..],
            _ => break,
        }
    }
    declared > limit
}

fn decode_zstd(input: &[u8], limit: usize) -> Result<Vec<u8>, StepError> {
    if zstd_declares_more_than(input, limit) {
        return Err(StepError::TooLarge);
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input)?;
    decoder.window_log_max(zstd_window_log_max(limit))?;
    let (out, decoder) = drain(decoder, limit)?;
    ensure_consumed(decoder.get_ref())?;
    Ok(out)
}

fn decode_snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, StepError> {
    let (out, decoder) = drain(snap::read::FrameDecoder::new(input), limit)?;
    ensure_consumed(decoder.get_ref())?;
    Ok(out)
}

/// A slice reader that remembers whether anyone tried to read past its end. lz4_flex treats
/// end of input where a block header should be as a clean end, so this is how a truncated LZ4
/// frame is told apart from a complete one (which ends on its end mark without such a read).
struct EofTracking<'a> {
    rest: &'a [u8],
    read_past_end: bool,
}

impl Read for EofTracking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.read_past_end = true;
        }
        self.rest.read(buf)
    }
}

fn decode_lz4(input: &[u8], limit: usize) -> Result<Vec<u8>, StepError> {
    if input.starts_with(&LZ4_LEGACY_MAGIC) {
        return Err(invalid(
            "legacy LZ4 format is not supported, use the LZ4 frame format",
        ));
    }
    let source = EofTracking {
        rest: input,
        read_past_end: false,
    };
    let mut decoder = lz4_flex::frame::FrameDecoder::new(source);
    let mut out = Vec::new();
    loop {
        let before = decoder.get_ref().rest.len();
        // Each pass decodes up to the end of one frame; concatenated frames are valid.
        read_bounded(&mut decoder, limit, &mut out)?;
        let source = decoder.get_ref();
        if source.read_past_end {
            return Err(truncated("truncated LZ4 frame"));
        }
        if source.rest.is_empty() {
            return Ok(out);
        }
        if source.rest.len() == before {
            return Err(invalid("trailing data after the end of the LZ4 frame"));
        }
    }
}

/// Encodes a response body with `coding` at this module's fixed levels (see the module docs).
///
/// Writing to memory cannot fail, so the only errors are encoder bugs, reported as
/// [`CodingError::Encode`].
pub fn encode_body(coding: Coding, input: &[u8]) -> Result<Vec<u8>, CodingError> {
    let capacity = input.len() / 2 + 64;
    let result = match coding {
        Coding::Identity => Ok(input.to_vec()),
        Coding::Gzip => {
            let level = flate2::Compression::new(GZIP_LEVEL);
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(capacity), level);
            encoder.write_all(input).and_then(|()| encoder.finish())
        }
        Coding::Deflate => {
            let level = flate2::Compression::new(GZIP_LEVEL);
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::with_capacity(capacity), level);
            encoder.write_all(input).and_then(|()| encoder.finish())
        }
        Coding::Br => encode_brotli(input, capacity),
        // The bulk API records the content size in the frame header.
        Coding::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL),
        Coding::Snappy => {
            let mut encoder = snap::write::FrameEncoder::new(Vec::with_capacity(capacity));
            encoder
                .write_all(input)
                .and_then(|()| encoder.into_inner().map_err(|err| err.into_error()))
        }
        Coding::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
            let mut encoder =
                lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(capacity));
            encoder
                .write_all(input)
                .and_then(|()| encoder.finish().map_err(io::Error::from))
        }
    };
    result.map_err(|source| CodingError::Encode {
        coding: coding.name(),
        source,
    })
}

/// A response body compressed while it is produced (chunked SQL answers). Every `push` returns
/// the compressed form of its input flushed to a byte boundary (gzip/deflate sync flush, brotli
/// and zstd block flush), so a client can decode each chunk as it arrives; `finish` returns the
/// coding's trailer. Snappy and lz4 are not offered for streams: `new` falls back to identity
/// and says so through `coding()`.
pub enum StreamEncoder {
    Identity,
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// Brotli's internal buffer for streamed bodies.
const BROTLI_STREAM_BUFFER_BYTES: usize = 64 * 1024;

impl StreamEncoder {
    pub fn new(coding: Coding) -> Result<StreamEncoder, CodingError> {
        let level = flate2::Compression::new(GZIP_LEVEL);
        Ok(match coding {
            Coding::Gzip => StreamEncoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Coding::Deflate => {
                StreamEncoder::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), level))
            }
            Coding::Br => StreamEncoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_STREAM_BUFFER_BYTES,
                BROTLI_QUALITY as u32,
                BROTLI_LGWIN as u32,
            ))),
            Coding::Zstd => StreamEncoder::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(|source| {
                    CodingError::Encode {
                        coding: coding.name(),
                        source,
                    }
                })?,
            ),
            Coding::Identity | Coding::Snappy | Coding::Lz4 => StreamEncoder::Identity,
        })
    }

    /// The coding actually applied (for `Content-Encoding`).
    pub fn coding(&self) -> Coding {
        match self {
            StreamEncoder::Identity => Coding::Identity,
            StreamEncoder::Gzip(_) => Coding::Gzip,
            StreamEncoder::Deflate(_) => Coding::Deflate,
            StreamEncoder::Br(_) => Coding::Br,
            StreamEncoder::Zstd(_) => Coding::Zstd,
        }
    }

    /// Compresses `data` and returns every byte the coding can emit so far.
    pub fn push(&mut self, data: Vec<u8>) -> io::Result<Vec<u8>> {
        fn flushed<W: Write>(
            w: &mut W,
            data: &[u8],
            out: impl FnOnce(&mut W) -> &mut Vec<u8>,
        ) -> io::Result<Vec<u8>> {
            w.write_all(data)?;
            w.flush()?;
            Ok(std::mem::take(out(w)))
        }
        match self {
            StreamEncoder::Identity => Ok(data),
            StreamEncoder::Gzip(e) => flushed(e, &data, |e| e.get_mut()),
            StreamEncoder::Deflate(e) => flushed(e, &data, |e| e.get_mut()),
            StreamEncoder::Br(e) => flushed(e.as_mut(), &data, |e| e.get_mut()),
            StreamEncoder::Zstd(e) => flushed(e, &data, |e| e.get_mut()),
        }
    }

    /// Ends the coded stream: the bytes still held and the trailer.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            StreamEncoder::Identity => Ok(Vec::new()),
            StreamEncoder::Gzip(e) => e.finish(),
            StreamEncoder::Deflate(e) => e.finish(),
            StreamEncoder::Br(e) => Ok(e.into_inner()),
            StreamEncoder::Zstd(e) => e.finish(),
        }
    }
}

fn encode_brotli(input: &[u8], capacity: usize) -> io::Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_LGWIN,
        size_hint: input.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(capacity);
    brotli::BrotliCompress(&mut &input[..], &mut out, &params)?;
    Ok(out)
}

/// What one `Accept-Encoding` element names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Coding(Coding),
    Any,
    Other,
}

/// One well-formed `Accept-Encoding` element; `q` is in thousandths (0..=1000).
#[derive(Debug, Clone, Copy)]
struct AcceptEntry {
    target: Target,
    q: u16,
}

/// Codings "*" can stand for when it cannot mean identity, in order of preference.
const WILDCARD_CODINGS: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Br, Coding::Zstd];

/// Picks the response coding for an `Accept-Encoding` value (RFC 9110 §12.5.3).
///
/// Elements are `token[;q=value]`, case-insensitive and whitespace tolerant; an element with a
/// malformed q is ignored, and of repeated codings the first element counts. The answer is the
/// acceptable coding with the highest q, ties going to the element listed first. Candidates are
/// the codings we offer that the client names (gzip, deflate, br, zstd, and snappy and lz4 only
/// when named), "identity", and "*": "*" stands for identity unless identity is listed, else
/// for the first of gzip, deflate, br, zstd that is not listed. So `*` alone gives an
/// uncompressed answer. An empty header gives `Identity`. A non-empty header with no element
/// of q > 0 naming one of our codings, "identity" or "*" fails with
/// [`CodingError::NotAcceptable`] (the /api/v1/sql contract), as does one where every
/// candidate is excluded.
pub fn negotiate(accept_encoding: &str) -> Result<Coding, CodingError> {
    let entries = parse_accept_encoding(accept_encoding);
    if accept_encoding.split(',').all(|e| e.trim().is_empty()) {
        return Ok(Coding::Identity);
    }
    let first_q = |target: Target| entries.iter().find(|e| e.target == target).map(|e| e.q);
    let mut best: Option<(Coding, u16)> = None;
    for (index, entry) in entries.iter().enumerate() {
        let first_of_kind = entries[..index].iter().all(|e| e.target != entry.target);
        if entry.q == 0 || !first_of_kind {
            continue;
        }
        let candidate = match entry.target {
            Target::Coding(coding) => Some(coding),
            Target::Any if first_q(Target::Coding(Coding::Identity)).is_none() => {
                Some(Coding::Identity)
            }
            Target::Any => WILDCARD_CODINGS
                .into_iter()
                .find(|&c| first_q(Target::Coding(c)).is_none()),
            Target::Other => None,
        };
        // Strictly greater: at equal q the earlier element wins.
        if let Some(coding) = candidate.filter(|_| best.is_none_or(|(_, q)| entry.q > q)) {
            best = Some((coding, entry.q));
        }
    }
    best.map(|(coding, _)| coding)
        .ok_or_else(|| CodingError::NotAcceptable(accept_encoding.to_string()))
}

/// Well-formed elements of an `Accept-Encoding` value, in order. Empty elements, elements with
/// an empty token and elements with a malformed q are skipped; other parameters are ignored.
fn parse_accept_encoding(value: &str) -> Vec<AcceptEntry> {
    let mut entries = Vec::new();
    'elements: for element in value.split(',') {
        let mut parts = element.split(';');
        let token = parts.next().unwrap_or_default().trim();
        if token.is_empty() {
            continue;
        }
        let mut q = 1000;
        for param in parts {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("q") {
                match parse_qvalue(val.trim()) {
                    Some(parsed) => q = parsed,
                    None => continue 'elements,
                }
            }
        }
        let target = match Coding::from_token(token) {
            Some(coding) => Target::Coding(coding),
            None if token == "*" => Target::Any,
            None => Target::Other,
        };
        entries.push(AcceptEntry { target, q });
    }
    entries
}

/// Parses an RFC 9110 qvalue (`0[.ddd]` or `1[.000]`) into thousandths.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A body compressed piece by piece decodes to the concatenated pieces; snappy and lz4 are
    /// not streamed (identity instead).
    #[test]
    fn stream_encoders_round_trip_chunk_by_chunk() {
        let pieces: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("row {i},{}\n", "x".repeat(i * 1000)).into_bytes())
            .collect();
        let whole: Vec<u8> = pieces.concat();
        for coding in ALL {
            let mut encoder = StreamEncoder::new(coding).expect("an encoder");
            let used = encoder.coding();
            assert!(
                used == coding || matches!(coding, Coding::Snappy | Coding::Lz4),
                "{coding:?} streams as {used:?}"
            );
            let mut wire = Vec::new();
            for piece in &pieces {
                wire.extend(encoder.push(piece.clone()).expect("push"));
            }
            wire.extend(encoder.finish().expect("finish"));
            let decoded = decode_body(&[used], &wire, 1 << 20).expect("decodes");
            assert_eq!(decoded, whole, "{coding:?}");
        }
    }

    const ALL: [Coding; 7] = [
        Coding::Identity,
        Coding::Gzip,
        Coding::Deflate,
        Coding::Br,
        Coding::Zstd,
        Coding::Snappy,
        Coding::Lz4,
    ];
    const COMPRESSED: [Coding; 6] = [
        Coding::Gzip,
        Coding::Deflate,
        Coding::Br,
        Coding::Zstd,
        Coding::Snappy,
        Coding::Lz4,
    ];
    const MIB: usize = 1024 * 1024;

    /// Deterministic, compressible but not trivial data (a line-protocol-like text).
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut ts: u64 = 1_700_000_000_000;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ts += 1000 + x % 7;
            let line = format!(
                "cpu,host=h{} usage={}.{} {}\n",
                x % 16,
                x % 100,
                x % 1000,
                ts
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(len);
        out
    }

    fn encoded(coding: Coding, input: &[u8]) -> Vec<u8> {
        encode_body(coding, input).expect("encoding to memory cannot fail")
    }

    fn raw_deflate(input: &[u8], level: u32) -> Vec<u8> {
        let level = flate2::Compression::new(level);
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), level);
        encoder.write_all(input).expect("write to Vec");
        encoder.finish().expect("finish to Vec")
    }

    fn assert_decode_error(result: Result<Vec<u8>, CodingError>, coding: Coding, what: &str) {
        match result {
            Err(CodingError::Decode { coding: name, .. }) => assert_eq!(name, coding.name()),
            other => panic!("{coding} {what}: expected Decode error, got {other:?}"),
        }
    }

    #[test]
    fn names_and_tokens_round_trip() {
        for coding in ALL {
            assert_eq!(Coding::from_token(coding.name()), Some(coding));
            assert_eq!(
                Coding::from_token(&coding.name().to_uppercase()),
                Some(coding)
            );
            assert_eq!(coding.to_string(), coding.name());
        }
        assert_eq!(Coding::from_token("x-gzip"), Some(Coding::Gzip));
        assert_eq!(Coding::from_token("X-GZip"), Some(Coding::Gzip));
        assert_eq!(Coding::from_token(" Br "), Some(Coding::Br));
        assert_eq!(Coding::from_token("compress"), None);
        assert_eq!(Coding::from_token("*"), None);
        assert_eq!(Coding::from_token(""), None);
    }

    #[test]
    fn round_trip_every_coding() {
        let inputs = [Vec::new(), b"hello, chronoshard".to_vec(), sample(MIB)];
        for coding in ALL {
            for input in &inputs {
                let body = encoded(coding, input);
                let decoded = decode_body(&[coding], &body, 2 * MIB)
                    .unwrap_or_else(|e| panic!("{coding} of {} bytes: {e}", input.len()));
                assert_eq!(&decoded, input, "{coding} of {} bytes", input.len());
            }
        }
    }

    #[test]
    fn round_trip_at_exact_limit() {
        let input = sample(100_000);
        for coding in ALL {
            let body = encoded(coding, &input);
            let decoded = decode_body(&[coding], &body, input.len()).expect("fits exactly");
            assert_eq!(decoded, input, "{coding}");
            match decode_body(&[coding], &body, input.len() - 1) {
                Err(CodingError::TooLarge {
                    coding: name,
                    limit_bytes,
                }) => {
                    assert_eq!((name, limit_bytes), (coding.name(), input.len() - 1));
                }
                other => panic!("{coding}: expected TooLarge, got {other:?}"),
            }
        }
    }

    #[test]
    fn compression_actually_compresses() {
        let input = sample(MIB);
        for coding in COMPRESSED {
            let body = encoded(coding, &input);
            assert!(
                body.len() < input.len() / 2,
                "{coding}: {} bytes",
                body.len()
            );
        }
    }

    #[test]
    fn deflate_accepts_zlib_and_raw() {
        let input = sample(200_000);
        let zlib = encoded(Coding::Deflate, &input);
        assert!(has_zlib_header(&zlib));
        assert_eq!(
            decode_body(&[Coding::Deflate], &zlib, MIB).expect("zlib"),
            input
        );
        for level in [0, 1, 6, 9] {
            let raw = raw_deflate(&input, level);
            assert!(!has_zlib_header(&raw), "level {level}");
            let decoded = decode_body(&[Coding::Deflate], &raw, MIB).expect("raw deflate");
            assert_eq!(decoded, input, "level {level}");
        }
        let tiny = raw_deflate(b"x", 6);
        assert_eq!(
            decode_body(&[Coding::Deflate], &tiny, 10).expect("tiny"),
            b"x"
        );
    }

    #[test]
    fn zlib_header_detection() {
        assert!(has_zlib_header(&[0x78, 0x9c]));
        assert!(has_zlib_header(&[0x78, 0x01]));
        assert!(has_zlib_header(&[0x78, 0xda]));
        assert!(has_zlib_header(&[0x48, 0x0d]));
        assert!(!has_zlib_header(&[0x78, 0x9d]), "check bits wrong");
        assert!(!has_zlib_header(&[0x79, 0x9c]), "method is not deflate");
        assert!(!has_zlib_header(&[0x78]));
        assert!(!has_zlib_header(&[]));
    }

    #[test]
    fn gzip_accepts_concatenated_members() {
        let mut body = encoded(Coding::Gzip, b"hello, ");
        body.extend(encoded(Coding::Gzip, b""));
        body.extend(encoded(Coding::Gzip, b"world"));
        let decoded = decode_body(&[Coding::Gzip], &body, 100).expect("members");
        assert_eq!(decoded, b"hello, world");
    }

    #[test]
    fn concatenated_frames_decode() {
        for coding in [Coding::Zstd, Coding::Snappy, Coding::Lz4] {
            let mut body = encoded(coding, b"first ");
            body.extend(encoded(coding, b"second"));
            let decoded = decode_body(&[coding], &body, 100).expect("frames");
            assert_eq!(decoded, b"first second", "{coding}");
        }
    }

    const BOMB_MIB: usize = 100;

    /// Writes 100 MiB of zeros into `writer` one MiB at a time, so that the test never holds
    /// the 100 MiB itself.
    fn write_zeros<W: Write>(mut writer: W) -> W {
        let zeros = vec![0u8; MIB];
        for _ in 0..BOMB_MIB {
            writer.write_all(&zeros).expect("write to Vec");
        }
        writer
    }

    /// 100 MiB of zeros compressed with `coding` (raw DEFLATE when `raw`), by streaming
    /// encoders (so no content size in the headers). Fast levels: only validity matters here.
    fn bomb(coding: Coding, raw: bool) -> Vec<u8> {
        let fast = flate2::Compression::fast();
        let result = match (coding, raw) {
            (Coding::Gzip, _) => {
                write_zeros(flate2::write::GzEncoder::new(Vec::new(), fast)).finish()
            }
            (Coding::Deflate, true) => {
                write_zeros(flate2::write::DeflateEncoder::new(Vec::new(), fast)).finish()
            }
            (Coding::Deflate, false) => {
                write_zeros(flate2::write::ZlibEncoder::new(Vec::new(), fast)).finish()
            }
            (Coding::Br, _) => {
                Ok(
                    write_zeros(brotli::CompressorWriter::new(Vec::new(), 4096, 1, 22))
                        .into_inner(),
                )
            }
            (Coding::Zstd, _) => {
                let encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd");
                write_zeros(encoder).finish()
            }
            (Coding::Snappy, _) => write_zeros(snap::write::FrameEncoder::new(Vec::new()))
                .into_inner()
                .map_err(|e| e.into_error()),
            (Coding::Lz4, _) => write_zeros(lz4_flex::frame::FrameEncoder::new(Vec::new()))
                .finish()
                .map_err(io::Error::from),
            (Coding::Identity, _) => unreachable!("identity cannot be a bomb"),
        };
        result.expect("compressing into a Vec")
    }

    fn assert_bomb_defused(coding: Coding, body: &[u8], what: &str) {
        let started = Instant::now();
        let result = decode_body(&[coding], body, MIB);
        let elapsed = started.elapsed();
        match result {
            Err(CodingError::TooLarge {
                coding: name,
                limit_bytes,
            }) => {
                assert_eq!((name, limit_bytes), (coding.name(), MIB), "{what}");
            }
            other => panic!("{what}: expected TooLarge, got {other:?}"),
        }
        // Decoding all 100 MiB takes seconds in a debug build; stopping at 1 MiB takes
        // milliseconds. The bound is generous so that a loaded CI machine does not flake.
        assert!(elapsed < Duration::from_secs(5), "{what}: took {elapsed:?}");
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        // Generating 100 MiB bombs is the slow part in a debug build: do it in parallel.
        let bombs: Vec<(Coding, bool, Vec<u8>)> = std::thread::scope(|scope| {
            let jobs = COMPRESSED
                .iter()
                .map(|&coding| (coding, false))
                .chain([(Coding::Deflate, true)])
                .map(|(coding, raw)| scope.spawn(move || (coding, raw, bomb(coding, raw))))
                .collect::<Vec<_>>();
            jobs.into_iter()
                .map(|job| job.join().expect("bomb generator panicked"))
                .collect()
        });
        for (coding, raw, body) in &bombs {
            let what = if *raw { "raw deflate" } else { coding.name() };
            assert!(
                body.len() < BOMB_MIB * MIB / 20,
                "{what}: {} bytes",
                body.len()
            );
            assert_bomb_defused(*coding, body, what);
        }
    }

    #[test]
    fn zstd_bomb_with_declared_size_is_rejected_up_front() {
        let zeros = vec![0u8; BOMB_MIB * MIB];
        let body = encoded(Coding::Zstd, &zeros);
        drop(zeros);
        assert!(zstd_declares_more_than(&body, MIB));
        assert!(!zstd_declares_more_than(&body, BOMB_MIB * MIB));
        assert_bomb_defused(Coding::Zstd, &body, "zstd with content size");
        // A second frame's declared size counts too.
        let mut two = encoded(Coding::Zstd, b"small");
        two.extend_from_slice(&body);
        assert_bomb_defused(Coding::Zstd, &two, "zstd second frame");
    }

    /// A single-segment zstd frame: its window is its whole (declared) content.
    fn zstd_single_segment(content: &[u8]) -> Vec<u8> {
        use zstd::zstd_safe::CParameter;
        let mut compressor = zstd::bulk::Compressor::new(1).expect("compressor");
        compressor
            .set_parameter(CParameter::WindowLog(27))
            .expect("window log");
        compressor.compress(content).expect("compress")
    }

    #[test]
    fn zstd_window_is_bounded_by_the_limit() {
        let content = vec![0u8; 20 * MIB];
        let body = zstd_single_segment(&content);
        // Needs a 20 MiB window: beyond what a 1 MiB limit allows, yet it is reported as
        // too large (from the header), not as a decoding failure.
        assert_bomb_defused(Coding::Zstd, &body, "zstd single segment");
        let decoded = decode_body(&[Coding::Zstd], &body, 20 * MIB).expect("fits");
        assert!(decoded == content);
        // Without a declared size, a window beyond max(8 MiB, limit) is refused.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        encoder.window_log(27).expect("window log");
        encoder.write_all(b"tiny").expect("write");
        let streamed = encoder.finish().expect("finish");
        let result = decode_body(&[Coding::Zstd], &streamed, MIB);
        assert_decode_error(result, Coding::Zstd, "window too large");
        let decoded = decode_body(&[Coding::Zstd], &streamed, 128 * MIB).expect("big limit");
        assert_eq!(decoded, b"tiny");
    }

    #[test]
    fn identity_is_bounded_too() {
        assert_eq!(decode_body(&[], b"abc", 3).expect("fits"), b"abc");
        assert_eq!(
            decode_body(&[Coding::Identity], b"abc", 3).expect("fits"),
            b"abc"
        );
        match decode_body(&[], b"abcd", 3) {
            Err(CodingError::TooLarge {
                coding: "identity",
                limit_bytes: 3,
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(decode_body(&[], b"", 0).expect("empty"), b"");
    }

    /// An endless source of zeros: anything reading it to the end never returns.
    struct Zeros;

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    #[test]
    fn bounded_read_never_allocates_past_the_limit() {
        for limit in [0, 1, 1000, READ_CHUNK, READ_CHUNK + 1, MIB, 3 * MIB + 17] {
            let mut out = Vec::new();
            let result = read_bounded(&mut Zeros, limit, &mut out);
            assert!(matches!(result, Err(StepError::TooLarge)), "limit {limit}");
            assert_eq!(out.len(), limit);
            assert!(
                out.capacity() <= limit.max(1),
                "limit {limit}: {}",
                out.capacity()
            );
        }
        let mut out = Vec::new();
        read_bounded(&mut io::repeat(7).take(5000), 5000, &mut out).expect("fits");
        assert_eq!(out, vec![7; 5000]);
        assert!(out.capacity() <= 5000);
    }

    #[test]
    fn bomb_output_buffer_stays_within_the_limit() {
        // 100 concatenated members of 1 MiB of zeros each: a 100 MiB gzip bomb made fast.
        let member = encoded(Coding::Gzip, &vec![0u8; MIB]);
        let body = member.repeat(BOMB_MIB);
        let mut out = Vec::new();
        let mut decoder = flate2::bufread::MultiGzDecoder::new(&body[..]);
        let result = read_bounded(&mut decoder, MIB + 1, &mut out);
        assert!(matches!(result, Err(StepError::TooLarge)));
        assert_eq!(out.len(), MIB + 1);
        assert!(out.capacity() <= MIB + 1, "{}", out.capacity());
        assert_bomb_defused(Coding::Gzip, &body, "gzip members");
    }

    #[test]
    fn truncated_and_garbage_inputs_fail_to_decode() {
        let input = sample(300_000);
        for coding in COMPRESSED {
            let body = encoded(coding, &input);
            for cut in [1, 2, 5, body.len() / 3, body.len() / 2, body.len() - 1] {
                let result = decode_body(&[coding], &body[..cut], 2 * MIB);
                assert_decode_error(result, coding, &format!("cut at {cut}"));
            }
            for tail in [&b"garbage!"[..], b"\0", b"\0\0\0\0", b"\xff"] {
                let mut bad = body.clone();
                bad.extend_from_slice(tail);
                let result = decode_body(&[coding], &bad, 2 * MIB);
                assert_decode_error(result, coding, &format!("trailing {tail:?}"));
            }
            let garbage = b"this is not compressed at all, just text".repeat(50);
            assert_decode_error(decode_body(&[coding], &garbage, MIB), coding, "garbage");
            if coding == Coding::Snappy {
                assert_eq!(decode_body(&[coding], b"", MIB).expect("empty stream"), b"");
            } else {
                assert_decode_error(decode_body(&[coding], b"", MIB), coding, "empty");
            }
            // Codings with an integrity check over all content also catch corruption that
            // still parses (brotli has no checksum; zstd's is optional and off here).
            if !matches!(coding, Coding::Br | Coding::Zstd) {
                let mut flipped = body.clone();
                let middle = flipped.len() / 2;
                flipped[middle] ^= 0x55;
                flipped[middle + 1] ^= 0xaa;
                assert_decode_error(decode_body(&[coding], &flipped, 2 * MIB), coding, "flip");
            }
        }
    }

    #[test]
    fn deflate_truncated_and_trailing_fail_for_both_framings() {
        let input = sample(100_000);
        let raw = raw_deflate(&input, 6);
        assert_decode_error(
            decode_body(&[Coding::Deflate], &raw[..raw.len() / 2], MIB),
            Coding::Deflate,
            "raw cut",
        );
        assert_decode_error(
            decode_body(&[Coding::Deflate], &raw[..raw.len() - 1], MIB),
            Coding::Deflate,
            "raw cut end",
        );
        let mut trailing = raw.clone();
        trailing.extend_from_slice(b"junk");
        assert_decode_error(
            decode_body(&[Coding::Deflate], &trailing, MIB),
            Coding::Deflate,
            "raw trailing",
        );
    }

    #[test]
    fn lz4_truncated_at_block_boundaries_fails() {
        let input = sample(300_000);
        let body = encoded(Coding::Lz4, &input);
        // Without the content checksum (4 bytes), and without the end mark as well (8 bytes).
        for cut in [4, 8] {
            let result = decode_body(&[Coding::Lz4], &body[..body.len() - cut], MIB);
            assert_decode_error(result, Coding::Lz4, &format!("{cut} bytes short"));
        }
        // A frame cut right after its header, and right after its magic number.
        assert_decode_error(
            decode_body(&[Coding::Lz4], &body[..7], MIB),
            Coding::Lz4,
            "header",
        );
        assert_decode_error(
            decode_body(&[Coding::Lz4], &body[..4], MIB),
            Coding::Lz4,
            "magic",
        );
        let mut legacy = LZ4_LEGACY_MAGIC.to_vec();
        legacy.extend_from_slice(&[0; 8]);
        assert_decode_error(
            decode_body(&[Coding::Lz4], &legacy, MIB),
            Coding::Lz4,
            "legacy",
        );
    }

    #[test]
    fn stacked_codings_decode_in_reverse() {
        let input = sample(200_000);
        let codings = parse_content_encoding("gzip, br").expect("known codings");
        assert_eq!(codings, [Coding::Gzip, Coding::Br]);
        let body = encoded(Coding::Br, &encoded(Coding::Gzip, &input));
        assert_eq!(decode_body(&codings, &body, MIB).expect("stacked"), input);
        // Wrong order is a decode error of the outer coding, not garbage output.
        let wrong = decode_body(&[Coding::Br, Coding::Gzip], &body, MIB);
        assert_decode_error(wrong, Coding::Gzip, "wrong order");
        // Every step is bounded, including the last one.
        match decode_body(&codings, &body, input.len() - 1) {
            Err(CodingError::TooLarge { coding: "gzip", .. }) => {}
            other => panic!("expected TooLarge from gzip, got {other:?}"),
        }
        let three = encoded(
            Coding::Zstd,
            &encoded(Coding::Lz4, &encoded(Coding::Snappy, &input)),
        );
        let codings = [Coding::Snappy, Coding::Lz4, Coding::Zstd];
        assert_eq!(decode_body(&codings, &three, MIB).expect("three"), input);
    }

    #[test]
    fn parse_content_encoding_cases() {
        let parse = |v: &str| parse_content_encoding(v).expect(v);
        assert_eq!(parse(""), []);
        assert_eq!(parse("   "), []);
        assert_eq!(parse("identity"), []);
        assert_eq!(parse("gzip"), [Coding::Gzip]);
        assert_eq!(parse("GZIP"), [Coding::Gzip]);
        assert_eq!(parse("x-gzip"), [Coding::Gzip]);
        assert_eq!(parse(" Br "), [Coding::Br]);
        assert_eq!(parse("gzip,br"), [Coding::Gzip, Coding::Br]);
        assert_eq!(
            parse("gzip ,  Identity , zstd"),
            [Coding::Gzip, Coding::Zstd]
        );
        assert_eq!(
            parse("deflate, , snappy,"),
            [Coding::Deflate, Coding::Snappy]
        );
        assert_eq!(parse("lz4"), [Coding::Lz4]);
        for bad in ["compress", "gzip, compress", "gzip;q=1", "*", "g zip"] {
            match parse_content_encoding(bad) {
                Err(CodingError::Unsupported(value)) => assert_eq!(value, bad),
                other => panic!("{bad:?}: expected Unsupported, got {other:?}"),
            }
        }
    }

    fn negotiated(header: &str) -> Option<Coding> {
        match negotiate(header) {
            Ok(coding) => Some(coding),
            Err(CodingError::NotAcceptable(value)) => {
                assert_eq!(value, header);
                None
            }
            Err(other) => panic!("{header:?}: unexpected {other:?}"),
        }
    }

    #[test]
    fn negotiate_cases() {
        use Coding::*;
        let cases: &[(&str, Option<Coding>)] = &[
            ("", Some(Identity)),
            ("  ", Some(Identity)),
            ("gzip", Some(Gzip)),
            ("gzip;q=0.5, br;q=0.9", Some(Br)),
            ("br;q=0, gzip", Some(Gzip)),
            ("*", Some(Identity)),
            ("identity", Some(Identity)),
            ("compress", None),
            ("compress, gzip", Some(Gzip)),
            ("deflate, gzip, br, zstd", Some(Deflate)),
            ("GZIP;Q=1.0", Some(Gzip)),
            ("gzip;q=abc", None),
            ("gzip;q=abc, br", Some(Br)),
            ("identity;q=0, *;q=0", None),
            ("identity;q=0", None),
            ("gzip;q=0", None),
            ("gzip ; q=0.8 , zstd ; q = 0.9", Some(Zstd)),
            ("zstd;q=0.9, br;q=0.9", Some(Zstd)),
            ("br;q=0.900, zstd;q=0.9", Some(Br)),
            ("gzip;q=0.001, identity;q=0.002", Some(Identity)),
            ("gzip;q=0.5, identity", Some(Identity)),
            ("identity;q=0.5, gzip", Some(Gzip)),
            ("gzip, *", Some(Gzip)),
            ("*, gzip", Some(Identity)),
            ("gzip;q=0.5, *", Some(Identity)),
            ("identity;q=0, *", Some(Gzip)),
            ("identity;q=0, gzip;q=0, *", Some(Deflate)),
            (
                "identity;q=0, gzip;q=0, deflate;q=0, br;q=0, zstd;q=0, *",
                None,
            ),
            ("*;q=0", None),
            ("snappy", Some(Snappy)),
            ("lz4;q=0.7, gzip;q=0.6", Some(Lz4)),
            ("x-gzip", Some(Gzip)),
            ("gzip;q=0, gzip", None),
            ("gzip;q=1.5", None),
            ("gzip;q=1.001", None),
            ("gzip;q=0.1234", None),
            ("gzip;q=", None),
            ("gzip;q=.5", None),
            ("gzip;level=9", Some(Gzip)),
            (",,gzip,,", Some(Gzip)),
            (";q=1", None),
        ];
        for &(header, expected) in cases {
            assert_eq!(negotiated(header), expected, "Accept-Encoding: {header:?}");
        }
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1."), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("0.123"), Some(123));
        for bad in [
            "", "2", "1.01", "0.1234", "-0", "0,5", "abc", "0.5x", " 0.5", "+1",
        ] {
            assert_eq!(parse_qvalue(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn zstd_window_follows_the_limit() {
        assert_eq!(zstd_window_log_max(0), 23);
        assert_eq!(zstd_window_log_max(MIB), 23);
        assert_eq!(zstd_window_log_max(8 * MIB), 23);
        assert_eq!(zstd_window_log_max(8 * MIB + 1), 24);
        assert_eq!(zstd_window_log_max(64 * MIB), 26);
        assert_eq!(zstd_window_log_max(usize::MAX), 30);
    }

    #[test]
    fn error_messages() {
        let too_large = decode_body(&[], b"abcd", 3).expect_err("too large");
        assert_eq!(
            too_large.to_string(),
            "body is larger than 3 bytes after identity decoding"
        );
        let decode = decode_body(&[Coding::Gzip], b"nope", 3).expect_err("not gzip");
        assert!(
            decode
                .to_string()
                .starts_with("decoding gzip body failed: "),
            "{decode}"
        );
        let unsupported = parse_content_encoding("compress").expect_err("unknown");
        assert_eq!(
            unsupported.to_string(),
            "content encoding not supported: compress"
        );
        let not_acceptable = negotiate("compress").expect_err("nothing of ours");
        assert_eq!(
            not_acceptable.to_string(),
            "no acceptable response encoding in Accept-Encoding: compress"
        );
    }
}
