//! Decoding zstd-compressed request bodies (`Content-Encoding: zstd`) within bounds, so that a
//! "zstd bomb" (a small frame that expands to gigabytes) costs the site at most its
//! `max_decoded_bytes` limit plus a small constant per request in flight. The extractors that
//! read a body and hand it here are in `body.rs`; the site's state holds the [`Decoders`].
//!
//! The bounds, and why each is needed:
//!
//! * The size as sent is bounded by the router's body limit (`max_body_bytes`), and a body is
//!   read and decoded only after the caller's credentials were checked (`body.rs`).
//! * The frame headers are read before anything is decoded: a body whose frames declare more
//!   than the limit is refused at once, and a body whose frames all declare their size is
//!   decoded into a buffer of exactly that size. Only zstd frames are accepted (not the legacy
//!   formats of zstd before 1.0, whose decoders take no window bound).
//! * The decoder's window (the history it keeps, allocated before decoding) is at most
//!   [`WINDOW_LOG_MAX`]: without it a frame header can ask for a 128 MiB window.
//! * The output buffer never grows past the limit: a body without declared sizes is decoded
//!   into a buffer of `max_decoded_bytes + 1` whose pages are touched only as bytes arrive,
//!   never by doubling a `Vec` (what `read_to_end` did, which is how one bomb cost three times
//!   the limit). Bodies that may decode to a mebibyte or more are decoded into an anonymous
//!   memory mapping, returned to the system as soon as the body is parsed.
//! * Bodies that do not declare at most [`INLINE_MAX`] bytes are decoded on
//!   `max_parallel_decodes` threads of their own ([`Decoders`]; decoding 64 MiB takes tens of
//!   milliseconds of CPU, which would stall every connection an async worker serves). A
//!   decoded buffer is parsed and freed on its thread, so however many requests are in flight,
//!   decoded bodies hold at most `max_parallel_decodes × (max_decoded_bytes + window)`.
//!   Threads of their own rather than tokio's blocking pool: each keeps a decoder context (and
//!   its window) between bodies, and the pool may run hundreds of threads.

use std::sync::{Arc, Mutex, mpsc};

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use zstd::zstd_safe::{self, DCtx, DParameter, InBuffer, OutBuffer, ResetDirective, WriteBuf};

use super::error::ApiError;

/// The largest decoder window accepted, as a power of two: 8 MiB, the most RFC 8878 (section
/// 3.1.1.1.2) recommends decoders support. zstd's compressor stays within it at every level up
/// to 19 (the agent uses 3); only the "ultra" levels 20 to 22 and `--long` ask for more.
pub const WINDOW_LOG_MAX: u32 = 23;

/// Bodies that declare at most this many decoded bytes are decoded on the async worker: a
/// delta decodes in microseconds, less than a hand-off to a decoder thread costs.
pub const INLINE_MAX: usize = 64 * 1024;

/// Bodies that may decode to this many bytes or more are decoded into a memory mapping.
const MAP_MIN: usize = 1024 * 1024;

/// A thread's decoder context that grew past this (its window and buffers, for a large body)
/// is freed after its body rather than kept for the next, so idle contexts hold little memory.
const KEEP_CONTEXT_BYTES: usize = 2 * 1024 * 1024;

/// The zstd magic numbers: a frame (RFC 8878 section 3.1.1) and the skippable frames (3.1.2),
/// whose low four bits vary.
const ZSTD_MAGIC: u32 = 0xFD2F_B528;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// A compressed body as a `T`: decoded and parsed on the async worker when its frames declare
/// at most [`INLINE_MAX`] bytes, else on a decoder thread.
pub async fn parse_zstd<T: DeserializeOwned + Send + 'static>(
    decoders: &Decoders,
    raw: Bytes,
    limit: usize,
) -> Result<T, ApiError> {
    // The frame headers of a body small as sent are walked here; those of a larger one on
    // its decoder thread, since walking them takes time in proportion to the body.
    if raw.len() <= INLINE_MAX {
        let declared = frames(&raw, limit)?;
        if declared.is_some_and(|size| size <= INLINE_MAX) {
            return parse(&decode_inline(&raw, limit, declared)?);
        }
    }
    decoders.parse(raw, limit).await
}

/// An uncompressed body as a `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadInput(format!("invalid request body: {e}")))
}

fn invalid(reason: impl std::fmt::Display) -> ApiError {
    ApiError::BadInput(format!("invalid zstd body: {reason}"))
}

fn over_limit(limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "request body is over the limit max_decoded_bytes ({limit} bytes) after decompression"
    ))
}

/// Walks the body's frame headers without decoding anything: the total size its frames
/// declare, or `None` when a frame does not declare one. Refuses legacy and unknown frames,
/// and a body that declares more than `limit`.
fn frames(raw: &[u8], limit: usize) -> Result<Option<usize>, ApiError> {
    let mut rest = raw;
    let mut total: Option<u64> = Some(0);
    if rest.is_empty() {
        return Err(invalid("the body is empty"));
    }
    while !rest.is_empty() {
        let magic = rest
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        match magic {
            Some(ZSTD_MAGIC) => {
                let declared = zstd_safe::get_frame_content_size(rest)
                    .map_err(|_| invalid("a frame header is corrupt"))?;
                total = total.zip(declared).map(|(a, b)| a.saturating_add(b));
                // Refused from the header alone, before the frame is even walked.
                if total.is_some_and(|n| n > limit as u64) {
                    return Err(over_limit(limit));
                }
            }
            Some(m) if m & 0xFFFF_FFF0 == SKIPPABLE_MAGIC => {}
            _ => {
                return Err(invalid(
                    "not a zstd frame (the legacy formats before zstd 1.0 are not accepted)",
                ));
            }
        }
        let size = zstd_safe::find_frame_compressed_size(rest)
            .map_err(|code| invalid(zstd_safe::get_error_name(code)))?;
        rest = rest
            .get(size..)
            .ok_or_else(|| invalid("a frame is truncated"))?;
    }
    // Within `limit` (checked above), so it fits a usize.
    Ok(total.map(|n| n as usize))
}

thread_local! {
    // A decompression context is ~100 KB that zstd allocates and clears; making one per
    // request was 6% of the site's CPU time under a delta load. One per thread, reused; only
    // bodies of at most `INLINE_MAX` bytes use it, so it stays small.
    static CONTEXT: std::cell::RefCell<Option<DCtx<'static>>> = const { std::cell::RefCell::new(None) };
}

/// A decoder context with the window bound set.
fn new_context() -> Result<DCtx<'static>, ApiError> {
    let mut context = DCtx::try_create()
        .ok_or_else(|| ApiError::Internal("zstd could not allocate a context".to_string()))?;
    context
        .set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
        .map_err(|code| {
            ApiError::Internal(format!(
                "zstd refused the window bound: {}",
                zstd_safe::get_error_name(code)
            ))
        })?;
    Ok(context)
}

/// Decompresses a zstd body, refusing it as soon as it grows past `limit`, a frame asks for a
/// window over [`WINDOW_LOG_MAX`], or it is not made of zstd frames. On the calling thread,
/// with a context kept per thread: for small bodies (and the fuzz target).
pub fn decode_zstd(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = frames(raw, limit)?;
    decode_inline(raw, limit, declared)
}

/// Runs `f` with this thread's decoder context, which is freed afterwards when a large body
/// made it grow.
fn with_context<R>(
    f: impl FnOnce(&mut DCtx<'static>) -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    CONTEXT.with_borrow_mut(|slot| {
        let context = match slot {
            Some(c) => c,
            None => slot.insert(new_context()?),
        };
        let result = f(context);
        if context.sizeof() > KEEP_CONTEXT_BYTES {
            *slot = None;
        }
        result
    })
}

/// [`decode_zstd`] once the frames were walked: into a `Vec` of the declared size, else of
/// `limit` + 1 (reserved, not touched).
fn decode_inline(raw: &[u8], limit: usize, declared: Option<usize>) -> Result<Vec<u8>, ApiError> {
    let bound = declared.unwrap_or(limit);
    let mut out: Vec<u8> = Vec::with_capacity(bound + 1);
    with_context(|context| decode_into(context, raw, limit, bound, &mut out))?;
    Ok(out)
}

/// Decodes `raw` into `out`, whose capacity is `bound` + 1 and which never grows: `bound` is
/// the size the frames declare in all, else `limit`. The one byte of room past the bound tells
/// "exactly at it" from "over it". Returns how many bytes were decoded.
fn decode_into<C: WriteBuf + ?Sized>(
    context: &mut DCtx<'_>,
    raw: &[u8],
    limit: usize,
    bound: usize,
    out: &mut C,
) -> Result<usize, ApiError> {
    // A body refused half-way left the context inside its frame; the window bound stays.
    context.reset(ResetDirective::SessionOnly).map_err(|code| {
        ApiError::Internal(format!(
            "zstd reset failed: {}",
            zstd_safe::get_error_name(code)
        ))
    })?;
    let mut input = InBuffer::around(raw);
    let mut written = 0;
    loop {
        let (before_in, before_out) = (input.pos(), written);
        let mut output = OutBuffer::around_pos(out, written);
        let hint = context.decompress_stream(&mut output, &mut input);
        written = output.pos();
        let hint = hint.map_err(|code| invalid(zstd_safe::get_error_name(code)))?;
        if written > bound {
            return Err(if written > limit {
                over_limit(limit)
            } else {
                invalid("a frame decodes to more than its header declares")
            });
        }
        let consumed = input.pos() == raw.len();
        if consumed && hint == 0 {
            return Ok(written);
        }
        // zstd makes progress whenever it can; with the input used up, or no progress, and a
        // frame still open, the body ended inside a frame.
        if consumed || (input.pos() == before_in && written == before_out) {
            return Err(invalid("the body ends inside a frame"));
        }
    }
}

/// Decodes a large body into an anonymous memory mapping of `bound` + 1 bytes: its pages are
/// made resident only as decoded bytes land in them, and all of them go back to the system
/// when it is dropped, rather than staying with the allocator (which kept a freed 64 MiB
/// buffer resident per thread). A body that declares less than [`MAP_MIN`] (a full report is
/// a few hundred kilobytes) goes into a `Vec`, sparing it the mapping's system calls.
fn decode_mapped<T: DeserializeOwned>(
    raw: &[u8],
    limit: usize,
    declared: Option<usize>,
) -> Result<T, ApiError> {
    let bound = declared.unwrap_or(limit);
    if bound < MAP_MIN {
        return parse(&decode_inline(raw, limit, declared)?);
    }
    let mut out = memmap2::MmapMut::map_anon(bound + 1).map_err(|e| {
        ApiError::Internal(format!(
            "cannot map {} bytes to decode a request body into: {e}",
            bound + 1
        ))
    })?;
    let written = with_context(|context| decode_into(context, raw, limit, bound, &mut out[..]))?;
    parse(&out[..written])
}

/// Work for a decoder thread.
type Job = Box<dyn FnOnce() + Send>;

/// Decoding of large bodies on `max_parallel_decodes` threads of its own, each with its own
/// decoder context; bodies wait in line for one. The threads end when this is dropped.
pub struct Decoders {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Decoders {
    pub fn new(threads: usize) -> Decoders {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("invsite-decode-{n}"))
                .spawn(move || {
                    loop {
                        // Holding the lock while waiting is how the threads take turns at the line.
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = job else { return };
                        // A panic in one body's decoding must not cost the site a decoder thread;
                        // its request sees its answer channel closed.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                // The others (or, with none, every large body's 500) still tell.
                tracing::warn!(error = %e, "Could not start a decoder thread.");
            }
        }
        Decoders {
            jobs: Mutex::new(jobs),
        }
    }

    /// Puts `work` in line for a decoder thread; its result arrives on the receiver.
    fn submit<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<R>, ApiError> {
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        sent.map_err(|_| ApiError::Internal("no decoder thread is running".to_string()))?;
        Ok(result)
    }

    /// Runs `work` on a decoder thread and hands back its result.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let result = self.submit(work)?;
        result.await.map_err(|_| {
            ApiError::Internal("a decoder thread failed on a request body".to_string())
        })
    }

    /// Walks `raw`'s frames, decodes it and parses it as a `T` on a decoder thread; the
    /// decoded bytes are freed there, before the thread takes the next body.
    async fn parse<T: DeserializeOwned + Send + 'static>(
        &self,
        raw: Bytes,
        limit: usize,
    ) -> Result<T, ApiError> {
        self.run(move || decode_mapped(&raw, limit, frames(&raw, limit)?))
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `len` zeros compressed as a stream: no content size in the frame header.
    fn stream_of_zeros(len: usize, level: i32, window_log: Option<u32>) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
        encoder.include_contentsize(false).unwrap();
        if let Some(log) = window_log {
            encoder.window_log(log).unwrap();
        }
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..len / chunk.len() {
            encoder.write_all(&chunk).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn round_trip_and_bomb() {
        let json = br#"{"a":1}"#;
        let packed = zstd::bulk::compress(json, 3).unwrap();
        assert_eq!(decode_zstd(&packed, 100).unwrap(), json);
        // 10 MB of zeros compresses to a few hundred bytes; a 1 MB limit refuses it.
        let bomb = zstd::bulk::compress(&vec![0u8; 10 << 20], 19).unwrap();
        assert!(bomb.len() < 4096, "{}", bomb.len());
        assert!(matches!(
            decode_zstd(&bomb, 1 << 20),
            Err(ApiError::TooLarge(_))
        ));
        assert!(matches!(
            decode_zstd(b"not zstd", 100),
            Err(ApiError::BadInput(_))
        ));
        // The thread's context is reused: after a refused bomb and garbage, a good body (and a
        // truncated one, which must not decode as a shorter good one) still decode correctly.
        assert_eq!(decode_zstd(&packed, 100).unwrap(), json);
        assert!(decode_zstd(&packed[..packed.len() - 2], 100).is_err());
        assert_eq!(decode_zstd(&packed, 100).unwrap(), json);
        // A bomb that does not declare its size is refused at the limit too, and at the limit
        // exactly a body is accepted.
        let stream = stream_of_zeros(4 << 20, 3, None);
        assert!(matches!(
            decode_zstd(&stream, 1 << 20),
            Err(ApiError::TooLarge(_))
        ));
        assert_eq!(decode_zstd(&stream, 4 << 20).unwrap().len(), 4 << 20);
        // Frames one after the other decode as one body, and their declared sizes add up.
        let two = [packed.clone(), packed.clone()].concat();
        assert_eq!(frames(&two, 100).unwrap(), Some(2 * json.len()));
        assert_eq!(
            decode_zstd(&two, 100).unwrap(),
            [&json[..], &json[..]].concat()
        );
        assert!(matches!(
            decode_zstd(&two, 2 * json.len() - 1),
            Err(ApiError::TooLarge(_))
        ));
        assert!(matches!(decode_zstd(b"", 100), Err(ApiError::BadInput(_))));
    }

    #[test]
    fn a_declared_size_over_the_limit_is_refused_from_the_header_alone() {
        // A frame header that declares 4 GiB - 1 (single segment, a 4-byte content size), with
        // nothing after it: refused as too large before any decoding (decoding would fail on
        // the missing blocks instead).
        let mut header = ZSTD_MAGIC.to_le_bytes().to_vec();
        header.push(0b1010_0000);
        header.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            zstd_safe::get_frame_content_size(&header).unwrap(),
            Some(u32::MAX as u64)
        );
        assert!(matches!(
            frames(&header, 64 << 20),
            Err(ApiError::TooLarge(_))
        ));
        assert!(matches!(
            decode_zstd(&header, 64 << 20),
            Err(ApiError::TooLarge(_))
        ));
        let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        assert!(matches!(frames(&bomb, 1000), Err(ApiError::TooLarge(_))));
        assert!(matches!(
            decode_zstd(&bomb, 1000),
            Err(ApiError::TooLarge(_))
        ));
        assert_eq!(frames(&bomb, 1 << 20).unwrap(), Some(1 << 20));
    }

    #[test]
    fn a_window_over_the_bound_is_refused() {
        // A frame may ask for a window of up to 2^31 bytes, allocated before any output; the
        // site accepts 2^23 (8 MiB), the most that level 19 uses.
        let wide = stream_of_zeros(1 << 20, 3, Some(WINDOW_LOG_MAX + 1));
        let e = decode_zstd(&wide, 64 << 20).unwrap_err();
        assert!(
            matches!(&e, ApiError::BadInput(m) if m.contains("too much memory")),
            "{e}"
        );
        let fits = stream_of_zeros(1 << 20, 19, Some(WINDOW_LOG_MAX));
        assert_eq!(decode_zstd(&fits, 64 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn legacy_and_skippable_frames() {
        // A skippable frame (magic 0x184D2A5?, 4-byte length, payload) decodes to nothing.
        let mut skippable = 0x184D_2A53u32.to_le_bytes().to_vec();
        skippable.extend_from_slice(&3u32.to_le_bytes());
        skippable.extend_from_slice(b"abc");
        let json = br#"{"a":1}"#;
        let body = [skippable.clone(), zstd::bulk::compress(json, 3).unwrap()].concat();
        assert_eq!(decode_zstd(&body, 100).unwrap(), json);
        // zstd 0.7's magic (legacy): refused by name, whatever follows.
        let mut legacy = 0xFD2F_B527u32.to_le_bytes().to_vec();
        legacy.extend_from_slice(&[0; 16]);
        let e = decode_zstd(&legacy, 100).unwrap_err();
        assert!(e.to_string().contains("legacy"), "{e}");
    }

    #[test]
    fn large_bodies_decode_on_the_decoder_threads_in_line() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let decoders = Decoders::new(1);
            let json = serde_json::to_vec(&vec!["x".repeat(100); 2000]).unwrap();
            assert!(json.len() > INLINE_MAX);
            let packed = Bytes::from(zstd::bulk::compress(&json, 3).unwrap());
            let parsed: Vec<String> = decoders.parse(packed.clone(), 1 << 20).await.unwrap();
            assert_eq!(parsed.len(), 2000);
            let thread = decoders
                .run(|| std::thread::current().name().map(str::to_string))
                .await
                .unwrap();
            assert_eq!(thread.as_deref(), Some("invsite-decode-0"));
            // While the only thread is busy, a body waits for it: it cannot be decoded before
            // the thread is let go, however long the wait.
            let (release, busy) = mpsc::channel::<()>();
            let holding = decoders.submit(move || busy.recv()).unwrap();
            let mut waiting = std::pin::pin!(decoders.parse::<Vec<String>>(packed, 1 << 20));
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(100), &mut waiting).await;
            assert!(
                early.is_err(),
                "a body was decoded while the only decoder thread was busy"
            );
            release.send(()).unwrap();
            holding.await.unwrap().unwrap();
            assert_eq!(waiting.await.unwrap().len(), 2000);
            // A bomb without a declared size stops at the limit there too.
            let bomb = Bytes::from(stream_of_zeros(4 << 20, 3, None));
            let e = decoders
                .parse::<Vec<String>>(bomb, 1 << 20)
                .await
                .unwrap_err();
            assert!(matches!(e, ApiError::TooLarge(_)), "{e}");
            // A panic costs its request an error, not the thread.
            let e = decoders.run(|| panic!("a decoder bug")).await.unwrap_err();
            assert!(matches!(e, ApiError::Internal(_)));
            assert_eq!(decoders.run(|| 7).await.unwrap(), 7);
        });
    }
}
