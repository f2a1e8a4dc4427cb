//! DICOM files (PS3.10) to 8-bit gray frames, with dicom-rs parsing the file.
//!
//! dicom-rs (`dicom-object`) parses the file meta group and the data set; this module
//! reads the image attributes, decodes the pixel data and maps it to 8-bit gray with
//! the exact mapping documented on [`decode_dicom_bytes`]. Decoding is kept in our
//! hands where dicom-rs 0.10's own pixel-data adapters trust the header too much for
//! untrusted files (its RLE and JPEG adapters index by the header's sizes and panic on
//! a short segment or a JPEG larger than declared; jpeg-decoder and openjp2 allocate by
//! the codestream's own header): RLE is decoded here, JPEG by `jpeg-decoder` directly
//! after the frame header was checked against the DICOM header, JPEG 2000 (with the
//! `jpeg2000` feature only) by dicom-rs's openjp2 adapter after the same check of the
//! codestream's SIZ marker, deflate by `flate2` with a ceiling on the inflated size.
//!
//! JPEG 2000 is off by default: openjp2 is a machine-translated port of OpenJPEG's C
//! with `unsafe` throughout, and fuzzing this module reached undefined behaviour in it
//! (a null pointer made into `NonNull` while freeing code blocks, caught by Rust's
//! debug precondition checks; `fuzz/regressions/dicom/openjp2-null-nonnull-*.dcm`).
//!
//! Every length dicom-rs would allocate for is checked against the bytes present
//! before it allocates ([`Guarded`] wraps its data-set decoder, [`check_meta_lengths`]
//! walks the meta group first), so a small file can never make it allocate gigabytes.
//!
//! No `std::panic::catch_unwind`: bad input is kept away from the panicking paths by
//! the checks above rather than caught afterwards, and `fuzz/fuzz_targets/dicom.rs`
//! fuzzes the whole of [`decode_dicom_bytes`] to hold that (its regressions are
//! replayed by the `dicom` integration tests).

use std::cell::RefCell;
use std::io::Read as _;
use std::path::Path;
use std::rc::Rc;

use dicom_core::Tag;
use dicom_core::header::{DataElementHeader, HasLength as _, Header as _, SequenceItemHeader, VR};
use dicom_core::value::{PrimitiveValue, Value};
use dicom_encoding::adapters::PixelDataObject as _;
use dicom_encoding::decode::Decode as _;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntax, TransferSyntaxIndex as _};
use dicom_object::mem::InMemElement;
use dicom_object::{FileDicomObject, FileMetaTable, InMemDicomObject, StandardDataDictionary};
use dicom_parser::stateful::decode::{
    DynStatefulDecoder, Error as ParseError, StatefulDecode, StatefulDecoder,
};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// How stored DICOM values become 8-bit gray; see [`decode_dicom_bytes`] for the exact
/// formulas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DicomWindow {
    /// The file's own display settings: its VOI LUT, else its window centre/width,
    /// else the full range of the stored bits (an 8-bit image maps `v → v`).
    #[default]
    Auto,
    /// The frame's own minimum..maximum (after rescale) stretched to 0..255.
    MinMax,
}

/// One decoded frame: 8-bit gray, row-major, at the file's own size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomFrame {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width × height` gray values, row by row.
    pub pixels: Vec<u8>,
}

/// Longest side accepted (as [`crate::decode_image`]).
const MAX_SIDE: u64 = 8192;
/// Most bytes of decoded samples per frame (as [`crate::decode_image`]).
const MAX_FRAME_BYTES: u64 = 32 << 20;
/// Most bytes of decoded samples for all frames together.
const MAX_TOTAL_BYTES: u64 = 256 << 20;
/// Largest file (or inflated data set) read: every frame at the limit plus 16 MiB of
/// other attributes.
const MAX_FILE_BYTES: u64 = MAX_TOTAL_BYTES + (16 << 20);
/// Deepest nesting of sequences accepted: dicom-rs builds nested sequences
/// recursively, so a file of nested empty sequences could otherwise overflow the stack
/// (an abort, not an error). Real images nest a handful of levels.
const MAX_NESTING: usize = 64;
/// Most data elements accepted in one file (each costs dicom-rs ~100 bytes of memory
/// for 8 bytes of input at the least).
const MAX_ELEMENTS: u64 = 1 << 20;
/// Most JPEG 2000 tiles accepted: openjp2 allocates a few KiB per tile up front.
const MAX_J2K_TILES: u64 = 4096;

/// Whether `bytes` look like a DICOM file: `DICM` at byte 128 (after the preamble),
/// or at byte 0 (a stream without the preamble, which dicom-rs also reads: `DICM`
/// then the file meta group). Data sets without a file meta group (ACR-NEMA) are not
/// DICOM files to this reader.
pub fn is_dicom(bytes: &[u8]) -> bool {
    magic_offset(bytes).is_some()
}

/// Where `DICM` is: 128 or 0.
fn magic_offset(bytes: &[u8]) -> Option<usize> {
    if bytes.get(128..132) == Some(b"DICM") {
        Some(128)
    } else if bytes.get(0..4) == Some(b"DICM") {
        Some(0)
    } else {
        None
    }
}

/// Decodes the DICOM file at `path`; see [`decode_dicom_bytes`]. The error is a
/// reason without the file name (the caller adds it).
pub fn decode_dicom(path: &Path, window: DicomWindow) -> Result<Vec<DicomFrame>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(too_large_file(len));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    decode_dicom_bytes(&bytes, window)
}

fn too_large_file(len: u64) -> String {
    format!(
        "file too large: {len} bytes (cxr reads DICOM files up to {} MiB)",
        MAX_FILE_BYTES >> 20
    )
}

/// Decodes a DICOM file held in memory to one 8-bit gray [`DicomFrame`] per frame.
///
/// **Files.** `DICM` at byte 128 or 0 ([`is_dicom`]), then the file meta group.
/// Transfer syntaxes: implicit VR little endian, explicit VR little and big endian,
/// deflated explicit VR little endian, RLE lossless, JPEG baseline and extended with
/// 8-bit samples, JPEG lossless (processes 14 and 14 SV1, 2 to 16 bits; Huffman coding:
/// jpeg-decoder refuses 12-bit lossy and arithmetic-coded JPEG, with an error), and with
/// the `jpeg2000` feature JPEG 2000 (lossless and lossy through dicom-rs's pure-Rust
/// openjp2, which also gets the Part 2 and High-Throughput UIDs, untested here; without
/// the feature an error says how to get it). Any other is an error naming it (e.g.
/// `unsupported transfer syntax 1.2.840.10008.1.2.4.80 (JPEG-LS Lossless Image
/// Compression)`).
///
/// **Pixels.** Bits Allocated 8 or 16, Bits Stored 1..=Bits Allocated at High Bit,
/// unsigned or signed (Pixel Representation; signed values are sign-extended from
/// Bits Stored), 1 sample (`MONOCHROME1`, `MONOCHROME2`) or 3 (`RGB`, `YBR_FULL`,
/// `YBR_FULL_422`, and `YBR_ICT`/`YBR_RCT` in JPEG 2000), Planar Configuration 0 or 1.
/// Multi-frame files give one frame per Number of Frames.
///
/// **Gray mapping** (one sample per pixel). For a stored value `s`, the modality
/// value is `x = s · RescaleSlope + RescaleIntercept` (1 and 0 when absent; a Modality
/// LUT Sequence is not applied). With [`DicomWindow::Auto`] the output `y` in 0..=255 is,
/// in this order of preference:
/// 1. the first VOI LUT Sequence item: `y = 255 · LUT[clamp(⌊x⌋ − first, 0, n − 1)] /
///    (2^bits − 1)` with `n, first, bits` from its LUT Descriptor (`n = 0` means 65536);
/// 2. the first Window Center `c` / Window Width `w` pair, with VOI LUT Function
///    (PS3.3 C.11.2.1.2 and C.11.2.1.3):
///    - `LINEAR` (the default, also for unknown names; needs `w ≥ 1`): `y = 0` if
///      `x ≤ c − 0.5 − (w − 1)/2`, `255` if `x > c − 0.5 + (w − 1)/2`, else
///      `((x − (c − 0.5)) / (w − 1) + 0.5) · 255`;
///    - `LINEAR_EXACT` (needs `w > 0`): `y = 0` if `x ≤ c − w/2`, `255` if
///      `x > c + w/2`, else `((x − c) / w + 0.5) · 255`;
///    - `SIGMOID` (needs `w > 0`): `y = 255 / (1 + exp(−4 (x − c) / w))`;
///
///    a pair that breaks its condition is ignored;
/// 3. the full range of the stored bits: `y = 255 · (s − smin) / (smax − smin)` with
///    `smin..=smax` the range of Bits Stored (`0..=2^b − 1`, or `−2^(b−1)..=2^(b−1) − 1`
///    when signed), so that an 8-bit unsigned image maps `v → v` exactly, as the same
///    PNG would.
///
/// With [`DicomWindow::MinMax`], `y = 255 · (x − min) / (max − min)` over the frame's
/// own `x` (all 0 when constant). Then `y` is rounded half up (`⌊y + 0.5⌋`), and for
/// `MONOCHROME1` inverted (`255 − y`), the inversion coming after the VOI stage as in
/// PS3.3 C.11.
///
/// **Colour** (three samples per pixel; no rescale or VOI, which DICOM defines for
/// gray only). 16-bit samples are first scaled to 8 bits over the full range of Bits
/// Stored (rounded half up). `YBR_FULL` (and `YBR_FULL_422`, upsampled by repeating
/// each Cb/Cr pair) becomes RGB as `R = Y + 1.402 (Cr − 128)`, `G = Y − 0.114 · 1.772 /
/// 0.587 (Cb − 128) − 0.299 · 1.402 / 0.587 (Cr − 128)`, `B = Y + 1.772 (Cb − 128)` in
/// 32-bit floats, rounded half up and clamped to 0..=255 (pydicom's formula); JPEG and
/// JPEG 2000 decoders return RGB themselves. Gray is then the `image` crate's own
/// `to_luma8` of that RGB (Rec. 709 weights 0.2126, 0.7152, 0.0722 in 32-bit floats,
/// rounded), so an RGB DICOM gives exactly what the same RGB PNG gives through
/// [`crate::decode_image`]. [`DicomWindow::MinMax`] stretches that gray over its own
/// minimum..maximum (`⌊255 · (g − min) / (max − min) + 0.5⌋`).
///
/// **Limits**, checked on the header before anything is decoded: sides up to 8192,
/// at most 32 MiB of decoded samples per frame (rows × columns × samples × bytes per
/// sample) and 256 MiB for all frames together; files (and inflated data sets) up to
/// 272 MiB; sequences nested at most 64 deep; at most 2^20 data elements. Every
/// element and item length is checked against the bytes present before dicom-rs
/// allocates for it.
///
/// **Errors** are a clear reason (the caller adds the file name): not a DICOM file,
/// truncated (a length past the end of the data, or native pixel data shorter than
/// the header declares), no pixel data (7FE0,0010), unsupported transfer syntax or
/// photometric interpretation, an inconsistent header (e.g. a JPEG frame whose size
/// differs from Rows × Columns), too large. Bad input never panics.
pub fn decode_dicom_bytes(bytes: &[u8], window: DicomWindow) -> Result<Vec<DicomFrame>, String> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large_file(bytes.len() as u64));
    }
    let obj = parse(bytes)?;
    let image = ImageHeader::read(&obj)?;
    let syntax = Syntax::of(obj.meta().transfer_syntax())?;
    decode_frames(&obj, &image, syntax, window)
}

// ---------------------------------------------------------------------------------------
// Parsing: the meta group and the data set, every length checked before allocating.

/// The parsed file, as dicom-rs holds it.
type Object = FileDicomObject<InMemDicomObject<StandardDataDictionary>>;

/// Parses the meta group and the data set (inflating a deflated one first).
fn parse(bytes: &[u8]) -> Result<Object, String> {
    let magic = magic_offset(bytes)
        .ok_or_else(|| "not a DICOM file: no \"DICM\" at byte 128 (nor at byte 0)".to_string())?;
    let from_magic = &bytes[magic..];
    check_meta_lengths(&from_magic[4..])?;
    let mut rest = from_magic;
    let meta = FileMetaTable::from_reader(&mut rest)
        .map_err(|e| format!("bad file meta group: {}", chain(&e)))?;
    let uid = meta.transfer_syntax().to_string();
    // Refuse what cannot be decoded before reading the data set: the reason is then
    // the transfer syntax, not some later symptom of it.
    let syntax = Syntax::of(&uid)?;
    let inflated;
    let (data, ts): (&[u8], &TransferSyntax) = match syntax {
        Syntax::Deflated => {
            inflated = inflate(rest)?;
            (&inflated, explicit_vr_le()?)
        }
        _ => (rest, registry_entry(&uid)?),
    };
    let problem = Rc::new(RefCell::new(None));
    let inner = StatefulDecoder::new_with(data, ts, SpecificCharacterSet::default(), 0)
        .map_err(|e| format!("cannot read transfer syntax {uid}: {}", chain(&e)))?;
    let guarded = Guarded {
        inner,
        total: data.len() as u64,
        problem: Rc::clone(&problem),
        open: Vec::new(),
        elements: 0,
    };
    let parsed = InMemDicomObject::read_dataset_with_dict(guarded, StandardDataDictionary);
    // The guard's own reason comes first: the parser's error is then only the
    // consequence of the refusal.
    if let Some(reason) = problem.borrow_mut().take() {
        return Err(reason);
    }
    let obj = parsed.map_err(|e| format!("bad data set: {}", chain(&e)))?;
    Ok(obj.with_exact_meta(meta))
}

/// An error and its sources, `: `-separated (snafu's `Display` shows the top only).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn registry_entry(uid: &str) -> Result<&'static TransferSyntax, String> {
    TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| format!("unsupported transfer syntax {uid} (unknown)"))
}

fn explicit_vr_le() -> Result<&'static TransferSyntax, String> {
    registry_entry("1.2.840.10008.1.2.1")
}

/// Walks the file meta group (after `DICM`) as dicom-rs's reader will, with the same
/// header decoder, and refuses a length past the end before dicom-rs allocates it.
/// Anything else odd is left for dicom-rs to report.
fn check_meta_lengths(meta: &[u8]) -> Result<(), String> {
    let decoder = dicom_encoding::decode::file_header_decoder();
    let mut rest = meta;
    let Ok((first, _)) = decoder.decode_header(&mut rest) else {
        return Ok(());
    };
    if first.tag() != Tag(0x0002, 0x0000) || first.length().get() != Some(4) || rest.len() < 4 {
        return Ok(());
    }
    let group_length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
    rest = &rest[4..];
    let mut read = 0u64;
    while read < group_length {
        let Ok((header, header_len)) = decoder.decode_header(&mut rest) else {
            return Ok(());
        };
        let Some(len) = header.length().get() else {
            return Ok(());
        };
        if len as usize > rest.len() {
            return Err(truncated(header.tag(), len.into(), rest.len() as u64));
        }
        rest = &rest[len as usize..];
        read += header_len as u64 + len as u64;
    }
    Ok(())
}

fn truncated(tag: Tag, len: u64, remaining: u64) -> String {
    format!(
        "truncated: element ({:04X},{:04X}) declares {len} bytes but only {remaining} remain",
        tag.group(),
        tag.element()
    )
}

/// Inflates a deflated data set (raw deflate, PS3.5 A.5) up to [`MAX_FILE_BYTES`].
fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(data)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad deflated data set: {e}"))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "deflated data set too large: more than {} MiB inflated",
            MAX_FILE_BYTES >> 20
        ));
    }
    Ok(out)
}

/// One open sequence or item, as dicom-rs's data-set reader tracks them.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// A sequence (not an item, not encapsulated pixel data).
    sequence: bool,
    /// Where it ends when its length is defined.
    end: Option<u64>,
}

/// dicom-rs's data-set decoder with every declared length checked against the bytes
/// left before dicom-rs allocates for it, and nesting and element count bounded.
///
/// dicom-rs reserves and zero-fills a value's declared length before reading it, so
/// a 200-byte file declaring a 4 GiB element would cost 4 GiB. A refusal is recorded
/// in `problem` (the reason reported) and surfaced to dicom-rs as an error of its own
/// type, made by reading from an empty source.
struct Guarded<'a> {
    inner: DynStatefulDecoder<&'a [u8]>,
    /// Bytes of the data set.
    total: u64,
    /// The first refusal's reason.
    problem: Rc<RefCell<Option<String>>>,
    /// Open sequences and items, innermost last.
    open: Vec<Open>,
    /// Element headers read.
    elements: u64,
}

type ParseResult<T> = Result<T, ParseError>;

/// A source whose every read fails (see [`Guarded::refuse`]).
struct Refusal;

impl std::io::Read for Refusal {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "length refused",
        ))
    }
}

impl Guarded<'_> {
    fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.inner.position())
    }

    /// Records `reason` and returns a parse error of dicom-rs's own type to stop it
    /// (its error type has no public constructor: the error of a read from a source
    /// that always fails serves).
    fn refuse(&mut self, reason: String) -> ParseError {
        self.problem.borrow_mut().get_or_insert(reason);
        let ts = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut failing =
            match StatefulDecoder::new_with(Refusal, &ts, SpecificCharacterSet::default(), 0) {
                Ok(d) => d,
                Err(e) => return e,
            };
        // The first read fails: `Refusal` has no byte to give.
        loop {
            if let Err(e) = failing.read_to_vec(1, &mut Vec::new()) {
                return e;
            }
        }
    }

    /// Refuses `len` bytes when fewer remain.
    fn check(&mut self, tag: Tag, len: u32) -> ParseResult<()> {
        let remaining = self.remaining();
        if u64::from(len) > remaining {
            return Err(self.refuse(truncated(tag, len.into(), remaining)));
        }
        Ok(())
    }

    fn check_header(&mut self, header: &DataElementHeader) -> ParseResult<()> {
        match header.length().get() {
            Some(len) => self.check(header.tag(), len),
            None => Ok(()),
        }
    }

    /// Closes the sequences and items whose defined length has been read.
    fn close_ended(&mut self) {
        let pos = self.inner.position();
        while self
            .open
            .last()
            .is_some_and(|o| o.end.is_some_and(|e| e <= pos))
        {
            self.open.pop();
        }
    }

    fn push(&mut self, sequence: bool, len: Option<u32>) -> ParseResult<()> {
        let end = len.map(|l| self.inner.position() + u64::from(l));
        self.open.push(Open { sequence, end });
        if self.open.iter().filter(|o| o.sequence).count() > MAX_NESTING {
            return Err(self.refuse(format!("sequences nested more than {MAX_NESTING} deep")));
        }
        Ok(())
    }
}

impl<'a> StatefulDecode for Guarded<'a> {
    type Reader = &'a [u8];

    fn decode_header(&mut self) -> ParseResult<DataElementHeader> {
        self.close_ended();
        let header = self.inner.decode_header()?;
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(self.refuse(format!("more than {MAX_ELEMENTS} data elements")));
        }
        self.check_header(&header)?;
        let tag = header.tag();
        if tag == Tag(0xFFFE, 0xE00D) || tag == Tag(0xFFFE, 0xE0DD) {
            // delimiters read where an element was expected close the innermost
            self.open.pop();
        } else if header.vr() == VR::SQ {
            self.push(true, header.length().get())?;
        } else if header.length().is_undefined() {
            // encapsulated pixel data is not built recursively; other undefined
            // lengths are sequences to dicom-rs
            let sequence = tag != Tag(0x7FE0, 0x0010);
            self.push(sequence, None)?;
        }
        Ok(header)
    }

    fn decode_item_header(&mut self) -> ParseResult<SequenceItemHeader> {
        self.close_ended();
        let header = self.inner.decode_item_header()?;
        match header {
            SequenceItemHeader::Item { len } => {
                if let Some(l) = len.get() {
                    self.check(Tag(0xFFFE, 0xE000), l)?;
                }
                self.push(false, len.get())?;
            }
            SequenceItemHeader::ItemDelimiter | SequenceItemHeader::SequenceDelimiter => {
                self.open.pop();
            }
        }
        Ok(header)
    }

    fn read_value(&mut self, header: &DataElementHeader) -> ParseResult<PrimitiveValue> {
        self.check_header(header)?;
        self.inner.read_value(header)
    }

    fn read_value_preserved(&mut self, header: &DataElementHeader) -> ParseResult<PrimitiveValue> {
        self.check_header(header)?;
        self.inner.read_value_preserved(header)
    }

    fn read_value_bytes(&mut self, header: &DataElementHeader) -> ParseResult<PrimitiveValue> {
        self.check_header(header)?;
        self.inner.read_value_bytes(header)
    }

    fn read_to_vec(&mut self, length: u32, vec: &mut Vec<u8>) -> ParseResult<()> {
        self.check(Tag(0xFFFE, 0xE000), length)?;
        self.inner.read_to_vec(length, vec)
    }

    fn read_u32_to_vec(&mut self, length: u32, vec: &mut Vec<u32>) -> ParseResult<()> {
        self.check(Tag(0xFFFE, 0xE000), length)?;
        self.inner.read_u32_to_vec(length, vec)
    }

    fn read_to<W>(&mut self, length: u32, out: W) -> ParseResult<()>
    where
        Self: Sized,
        W: std::io::Write,
    {
        self.check(Tag(0xFFFE, 0xE000), length)?;
        self.inner.read_to(length, out)
    }

    fn skip_bytes(&mut self, length: u32) -> ParseResult<()> {
        self.check(Tag(0xFFFE, 0xE000), length)?;
        self.inner.skip_bytes(length)
    }

    fn seek(&mut self, position: u64) -> ParseResult<()>
    where
        Self::Reader: std::io::Seek,
    {
        self.inner.seek(position)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

// ---------------------------------------------------------------------------------------
// The image header.

/// How the pixel data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// Native (uncompressed) pixel data: implicit/explicit VR, little/big endian.
    Native,
    /// Native pixel data in a deflated data set.
    Deflated,
    /// RLE lossless.
    Rle,
    /// JPEG baseline, extended or lossless.
    Jpeg,
    /// JPEG 2000 (Part 1, Part 2, High-Throughput).
    Jpeg2000,
}

impl Syntax {
    fn of(uid: &str) -> Result<Syntax, String> {
        Ok(match uid {
            "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2" => Syntax::Native,
            "1.2.840.10008.1.2.1.99" => Syntax::Deflated,
            "1.2.840.10008.1.2.5" => Syntax::Rle,
            "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70" => Syntax::Jpeg,
            "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.92"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203" => Syntax::Jpeg2000,
            _ => {
                let name = TransferSyntaxRegistry
                    .get(uid)
                    .map_or("unknown", |ts| ts.name());
                return Err(format!("unsupported transfer syntax {uid} ({name})"));
            }
        })
    }

    fn is_native(self) -> bool {
        matches!(self, Syntax::Native | Syntax::Deflated)
    }
}

/// Photometric interpretations read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Photometric {
    Monochrome1,
    Monochrome2,
    Rgb,
    YbrFull,
    YbrFull422,
    /// JPEG 2000's irreversible / reversible colour transforms (undone by the decoder).
    YbrJ2k,
}

/// VOI LUT Function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// The display stage for gray images, as found in the file.
#[derive(Debug, Clone, PartialEq)]
enum Voi {
    /// The first VOI LUT Sequence item.
    Lut {
        /// First stored (modality) value mapped.
        first: i64,
        /// Bits per entry.
        bits: u32,
        /// Entries.
        data: Vec<u16>,
    },
    /// The first window.
    Window {
        center: f64,
        width: f64,
        function: VoiFunction,
    },
    /// Neither: the full range of the stored bits.
    Full,
}

/// The attributes that say what the pixel data is.
#[derive(Debug, Clone, PartialEq)]
struct ImageHeader {
    rows: usize,
    cols: usize,
    samples: usize,
    /// 8 or 16.
    bits_allocated: u32,
    bits_stored: u32,
    /// Bit position of the stored value's lowest bit (High Bit + 1 − Bits Stored).
    shift: u32,
    signed: bool,
    photometric: Photometric,
    /// Planar Configuration 1 (colour by plane; native data only).
    planar: bool,
    frames: usize,
    slope: f64,
    intercept: f64,
    voi: Voi,
}

const ROWS: Tag = Tag(0x0028, 0x0010);
const COLUMNS: Tag = Tag(0x0028, 0x0011);
const SAMPLES_PER_PIXEL: Tag = Tag(0x0028, 0x0002);
const PHOTOMETRIC: Tag = Tag(0x0028, 0x0004);
const PLANAR_CONFIGURATION: Tag = Tag(0x0028, 0x0006);
const NUMBER_OF_FRAMES: Tag = Tag(0x0028, 0x0008);
const BITS_ALLOCATED: Tag = Tag(0x0028, 0x0100);
const BITS_STORED: Tag = Tag(0x0028, 0x0101);
const HIGH_BIT: Tag = Tag(0x0028, 0x0102);
const PIXEL_REPRESENTATION: Tag = Tag(0x0028, 0x0103);
const WINDOW_CENTER: Tag = Tag(0x0028, 0x1050);
const WINDOW_WIDTH: Tag = Tag(0x0028, 0x1051);
const RESCALE_INTERCEPT: Tag = Tag(0x0028, 0x1052);
const RESCALE_SLOPE: Tag = Tag(0x0028, 0x1053);
const VOI_LUT_FUNCTION: Tag = Tag(0x0028, 0x1056);
const VOI_LUT_SEQUENCE: Tag = Tag(0x0028, 0x3010);
const LUT_DESCRIPTOR: Tag = Tag(0x0028, 0x3002);
const LUT_DATA: Tag = Tag(0x0028, 0x3006);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

type Element = InMemElement<StandardDataDictionary>;

/// A present, non-empty element.
fn present(obj: &InMemDicomObject<StandardDataDictionary>, tag: Tag) -> Option<&Element> {
    obj.get(tag).filter(|e| !e.value().is_empty())
}

/// An integer attribute; `None` when absent or empty.
fn int_attr(
    obj: &InMemDicomObject<StandardDataDictionary>,
    tag: Tag,
    name: &str,
) -> Result<Option<i64>, String> {
    present(obj, tag)
        .map(|e| {
            e.to_int::<i64>()
                .map_err(|_| format!("bad {name} {}: not an integer", show(e)))
        })
        .transpose()
}

/// A required integer attribute in `range`.
fn required(
    obj: &InMemDicomObject<StandardDataDictionary>,
    tag: Tag,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    let v = int_attr(obj, tag, name)?.ok_or_else(|| format!("missing {name} {}", tag_text(tag)))?;
    in_range(v, name, range)
}

fn in_range(v: i64, name: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "unsupported {name} {v} (cxr reads {}..={})",
            range.start(),
            range.end()
        ))
    }
}

/// The first value of a decimal attribute; `None` when absent, empty or unreadable.
fn first_f64(obj: &InMemDicomObject<StandardDataDictionary>, tag: Tag) -> Option<f64> {
    present(obj, tag)?
        .to_multi_float64()
        .ok()?
        .first()
        .copied()
        .filter(|v| v.is_finite())
}

fn tag_text(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.group(), tag.element())
}

/// An element's value, shortened, for messages.
fn show(e: &Element) -> String {
    let text = e
        .to_str()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| "?".into());
    let short: String = text.chars().take(32).collect();
    format!("{:?}", short)
}

impl ImageHeader {
    fn read(obj: &Object) -> Result<ImageHeader, String> {
        let o: &InMemDicomObject<StandardDataDictionary> = obj;
        if o.get(PIXEL_DATA).is_none() {
            return Err("no pixel data (7FE0,0010)".into());
        }
        let rows = required(o, ROWS, "Rows", 1..=u16::MAX as i64)?;
        let cols = required(o, COLUMNS, "Columns", 1..=u16::MAX as i64)?;
        let samples = match int_attr(o, SAMPLES_PER_PIXEL, "Samples per Pixel")? {
            Some(v) => in_range(v, "Samples per Pixel", 1..=3)?,
            None => 1,
        };
        if samples == 2 {
            return Err("unsupported Samples per Pixel 2 (cxr reads 1 or 3)".into());
        }
        let bits_allocated = required(o, BITS_ALLOCATED, "Bits Allocated", 1..=64)?;
        if bits_allocated != 8 && bits_allocated != 16 {
            return Err(format!(
                "unsupported Bits Allocated {bits_allocated} (cxr reads 8 or 16)"
            ));
        }
        let bits_stored = match int_attr(o, BITS_STORED, "Bits Stored")? {
            Some(v) => in_range(v, "Bits Stored", 1..=bits_allocated)?,
            None => bits_allocated,
        };
        let high_bit = match int_attr(o, HIGH_BIT, "High Bit")? {
            Some(v) => in_range(v, "High Bit", bits_stored - 1..=bits_allocated - 1)?,
            None => bits_stored - 1,
        };
        let signed = match int_attr(o, PIXEL_REPRESENTATION, "Pixel Representation")? {
            Some(v) => in_range(v, "Pixel Representation", 0..=1)? == 1,
            None => false,
        };
        let planar = match int_attr(o, PLANAR_CONFIGURATION, "Planar Configuration")? {
            Some(v) if samples == 3 => in_range(v, "Planar Configuration", 0..=1)? == 1,
            _ => false,
        };
        let frames = match int_attr(o, NUMBER_OF_FRAMES, "Number of Frames")? {
            Some(v) => in_range(v, "Number of Frames", 1..=i32::MAX as i64)?,
            None => 1,
        };
        let pi_text = present(o, PHOTOMETRIC)
            .and_then(|e| e.to_str().ok())
            .map(|s| {
                s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_string()
            });
        let photometric = match (pi_text.as_deref(), samples) {
            (Some("MONOCHROME1"), 1) => Photometric::Monochrome1,
            (Some("MONOCHROME2") | None, 1) => Photometric::Monochrome2,
            (Some("RGB"), 3) => Photometric::Rgb,
            (Some("YBR_FULL"), 3) => Photometric::YbrFull,
            (Some("YBR_FULL_422"), 3) => Photometric::YbrFull422,
            (Some("YBR_ICT" | "YBR_RCT"), 3) => Photometric::YbrJ2k,
            (Some(pi), n) => {
                return Err(format!(
                    "unsupported Photometric Interpretation {pi:?} with {n} sample(s) per pixel"
                ));
            }
            (None, n) => {
                return Err(format!(
                    "missing Photometric Interpretation (0028,0004) for {n} samples per pixel"
                ));
            }
        };
        let (slope, intercept) =
            match (first_f64(o, RESCALE_SLOPE), first_f64(o, RESCALE_INTERCEPT)) {
                (None, None) => (1.0, 0.0),
                (s, i) => (s.unwrap_or(1.0), i.unwrap_or(0.0)),
            };
        let header = ImageHeader {
            rows: rows as usize,
            cols: cols as usize,
            samples: samples as usize,
            bits_allocated: bits_allocated as u32,
            bits_stored: bits_stored as u32,
            shift: (high_bit + 1 - bits_stored) as u32,
            signed,
            photometric,
            planar,
            frames: frames as usize,
            slope,
            intercept,
            voi: Voi::Full,
        };
        header.check_limits()?;
        let voi = if samples == 1 {
            read_voi(o, signed)?
        } else {
            Voi::Full
        };
        Ok(ImageHeader { voi, ..header })
    }

    /// Bytes of one decoded frame (as the codecs return it: interleaved, 8 or 16 bits).
    fn frame_bytes(&self) -> usize {
        self.rows * self.cols * self.samples * (self.bits_allocated as usize / 8)
    }

    /// Bytes of one frame as stored natively (YBR_FULL_422 keeps two samples a pixel).
    fn native_frame_bytes(&self) -> usize {
        if self.photometric == Photometric::YbrFull422 {
            self.rows * self.cols * 2 * (self.bits_allocated as usize / 8)
        } else {
            self.frame_bytes()
        }
    }

    fn check_limits(&self) -> Result<(), String> {
        let (rows, cols) = (self.rows as u64, self.cols as u64);
        let frame = rows * cols * self.samples as u64 * (self.bits_allocated as u64 / 8);
        let total = frame.saturating_mul(self.frames as u64);
        if rows > MAX_SIDE || cols > MAX_SIDE || frame > MAX_FRAME_BYTES || total > MAX_TOTAL_BYTES
        {
            return Err(format!(
                "image too large: {cols}×{rows} pixels × {} sample(s) × {} bits × {} frame(s) \
                 (cxr decodes sides up to {MAX_SIDE}, at most {} MiB of pixels per frame and \
                 {} MiB in all)",
                self.samples,
                self.bits_allocated,
                self.frames,
                MAX_FRAME_BYTES >> 20,
                MAX_TOTAL_BYTES >> 20
            ));
        }
        Ok(())
    }

    /// The smallest and largest stored values.
    fn stored_range(&self) -> (i32, i32) {
        let b = self.bits_stored;
        if self.signed {
            (-(1 << (b - 1)), (1 << (b - 1)) - 1)
        } else {
            (0, (1 << b) - 1)
        }
    }
}

/// The VOI stage of a gray image: LUT, else window, else full range.
fn read_voi(o: &InMemDicomObject<StandardDataDictionary>, signed: bool) -> Result<Voi, String> {
    if let Some(item) = present(o, VOI_LUT_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first())
    {
        return read_voi_lut(item, signed);
    }
    let (Some(center), Some(width)) = (first_f64(o, WINDOW_CENTER), first_f64(o, WINDOW_WIDTH))
    else {
        return Ok(Voi::Full);
    };
    let function = match present(o, VOI_LUT_FUNCTION).and_then(|e| e.to_str().ok()) {
        Some(f) if f.trim() == "LINEAR_EXACT" => VoiFunction::LinearExact,
        Some(f) if f.trim() == "SIGMOID" => VoiFunction::Sigmoid,
        _ => VoiFunction::Linear,
    };
    let valid = match function {
        VoiFunction::Linear => width >= 1.0,
        VoiFunction::LinearExact | VoiFunction::Sigmoid => width > 0.0,
    };
    Ok(if valid {
        Voi::Window {
            center,
            width,
            function,
        }
    } else {
        Voi::Full
    })
}

fn read_voi_lut(
    item: &InMemDicomObject<StandardDataDictionary>,
    signed: bool,
) -> Result<Voi, String> {
    let bad = |why: &str| format!("bad VOI LUT Sequence (0028,3010): {why}");
    let descriptor: Vec<i64> = present(item, LUT_DESCRIPTOR)
        .ok_or_else(|| bad("no LUT Descriptor"))?
        .to_multi_int::<i64>()
        .map_err(|_| bad("LUT Descriptor is not 3 integers"))?;
    let [entries, first, bits] = descriptor[..] else {
        return Err(bad("LUT Descriptor is not 3 integers"));
    };
    let entries = match entries {
        0 => 65536,
        n @ 1..=65535 => n as usize,
        _ => return Err(bad("LUT Descriptor entry count not in 0..=65535")),
    };
    // the first mapped value is US or SS as the pixel data; read as US it may need
    // reinterpreting
    let first = if signed && first > i16::MAX as i64 && first <= u16::MAX as i64 {
        first - 65536
    } else {
        first
    };
    let bits = u32::try_from(bits)
        .ok()
        .filter(|b| (1..=16).contains(b))
        .ok_or_else(|| bad("LUT Descriptor bits not in 1..=16"))?;
    let data = lut_values(present(item, LUT_DATA).ok_or_else(|| bad("no LUT Data"))?)
        .ok_or_else(|| bad("LUT Data is not 16-bit values"))?;
    if data.len() < entries {
        return Err(bad(&format!(
            "LUT Data has {} entries, the descriptor {entries}",
            data.len()
        )));
    }
    let mut data = data;
    data.truncate(entries);
    Ok(Voi::Lut { first, bits, data })
}

/// LUT Data as 16-bit values (US, SS or OW; OB read as little-endian pairs).
fn lut_values(e: &Element) -> Option<Vec<u16>> {
    match e.value() {
        Value::Primitive(PrimitiveValue::U16(v)) => Some(v.to_vec()),
        Value::Primitive(PrimitiveValue::I16(v)) => Some(v.iter().map(|&x| x as u16).collect()),
        Value::Primitive(PrimitiveValue::U8(v)) => Some(
            v.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Frames: decoding and mapping to gray.

fn decode_frames(
    obj: &Object,
    h: &ImageHeader,
    syntax: Syntax,
    window: DicomWindow,
) -> Result<Vec<DicomFrame>, String> {
    let pixel_data = obj.get(PIXEL_DATA).ok_or("no pixel data (7FE0,0010)")?;
    let mut frames = Vec::with_capacity(h.frames);
    if syntax.is_native() {
        if h.photometric == Photometric::YbrFull422
            && (h.bits_allocated != 8 || !h.cols.is_multiple_of(2))
        {
            return Err(
                "unsupported YBR_FULL_422: native data must be 8-bit with even Columns".into(),
            );
        }
        let data = native_bytes(pixel_data.value())?;
        let frame_len = h.native_frame_bytes();
        let needed = frame_len * h.frames;
        if data.len() < needed {
            return Err(format!(
                "truncated: pixel data has {} bytes, the header declares {needed} \
                 ({}×{} × {} sample(s) × {} bits × {} frame(s))",
                data.len(),
                h.cols,
                h.rows,
                if h.photometric == Photometric::YbrFull422 {
                    2
                } else {
                    h.samples
                },
                h.bits_allocated,
                h.frames
            ));
        }
        for f in 0..h.frames {
            let raw = &data[f * frame_len..(f + 1) * frame_len];
            frames.push(to_gray(raw, h, h.photometric, h.planar, window)?);
        }
        return Ok(frames);
    }
    let Value::PixelSequence(seq) = pixel_data.value() else {
        return Err("pixel data is not encapsulated, as its transfer syntax requires".into());
    };
    if seq.fragments().is_empty() {
        return Err("no pixel data (7FE0,0010): no fragments".into());
    }
    for f in 0..h.frames {
        let bytes = obj
            .frame_pixel_data(f as u32)
            .ok_or_else(|| format!("frame {f}: no fragments for it (missing offset table?)"))?;
        let (raw, photometric) = match syntax {
            // decoded colour is never subsampled
            Syntax::Rle => (
                decode_rle(&bytes, h).map_err(|e| frame_error(f, h, e))?,
                full(h.photometric),
            ),
            Syntax::Jpeg => (
                decode_jpeg(&bytes, h).map_err(|e| frame_error(f, h, e))?,
                if h.samples == 3 {
                    Photometric::Rgb
                } else {
                    h.photometric
                },
            ),
            _ => (
                decode_j2k(obj, f, &bytes, h).map_err(|e| frame_error(f, h, e))?,
                match h.photometric {
                    Photometric::Rgb | Photometric::YbrJ2k => Photometric::Rgb,
                    p => full(p),
                },
            ),
        };
        if raw.len() != h.frame_bytes() {
            return Err(frame_error(
                f,
                h,
                format!("decoded {} bytes, expected {}", raw.len(), h.frame_bytes()),
            ));
        }
        frames.push(to_gray(&raw, h, photometric, false, window)?);
    }
    Ok(frames)
}

/// YBR_FULL_422 decoded by a codec is full YBR.
fn full(p: Photometric) -> Photometric {
    if p == Photometric::YbrFull422 {
        Photometric::YbrFull
    } else {
        p
    }
}

fn frame_error(f: usize, h: &ImageHeader, e: String) -> String {
    if h.frames == 1 {
        e
    } else {
        format!("frame {f}: {e}")
    }
}

/// Native pixel data as little-endian bytes (dicom-rs holds OW as 16-bit numbers).
fn native_bytes(
    value: &Value<InMemDicomObject<StandardDataDictionary>>,
) -> Result<Vec<u8>, String> {
    match value {
        Value::Primitive(PrimitiveValue::U8(v)) => Ok(v.to_vec()),
        Value::Primitive(PrimitiveValue::U16(v)) => {
            Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        Value::Primitive(PrimitiveValue::I16(v)) => {
            Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        Value::Primitive(PrimitiveValue::Empty) => Err("no pixel data (7FE0,0010): empty".into()),
        Value::PixelSequence(_) => {
            Err("pixel data is encapsulated, but the transfer syntax is native".into())
        }
        _ => Err("pixel data (7FE0,0010) is not OB/OW".into()),
    }
}

/// RLE lossless (PS3.5 Annex G): one fragment a frame, a 64-byte header of segment
/// offsets, one PackBits segment per byte plane (most significant first) per sample.
/// Returns interleaved little-endian samples.
fn decode_rle(fragment: &[u8], h: &ImageHeader) -> Result<Vec<u8>, String> {
    let bps = h.bits_allocated as usize / 8;
    let segments = h.samples * bps;
    let word = |i: usize| -> Option<usize> {
        let b = fragment.get(4 * i..4 * i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = word(0).ok_or("RLE fragment shorter than its 64-byte header")?;
    if fragment.len() < 64 {
        return Err("RLE fragment shorter than its 64-byte header".into());
    }
    if count != segments {
        return Err(format!(
            "RLE header declares {count} segments, the image needs {segments}"
        ));
    }
    let pixels = h.rows * h.cols;
    // Decode every segment before allocating the frame: a PackBits byte pair yields at
    // most 128 bytes, so a short segment fails here without a header-sized allocation.
    let mut planes = Vec::with_capacity(segments);
    for seg in 0..segments {
        let start = word(1 + seg).unwrap_or(0);
        let end = if seg + 1 < segments {
            word(2 + seg).unwrap_or(0)
        } else {
            fragment.len()
        };
        if start < 64 || start > end || end > fragment.len() {
            return Err(format!("RLE segment {seg} has bad offsets {start}..{end}"));
        }
        let src = &fragment[start..end];
        if src.len().saturating_mul(64) + 128 < pixels {
            return Err(format!(
                "RLE segment {seg} has {} bytes, too few for {pixels} pixels",
                src.len()
            ));
        }
        let mut plane = Vec::with_capacity(pixels);
        packbits(src, &mut plane, pixels);
        if plane.len() < pixels {
            return Err(format!(
                "RLE segment {seg} decodes to {} bytes, expected {pixels}",
                plane.len()
            ));
        }
        planes.push(plane);
    }
    let mut out = vec![0u8; pixels * segments];
    for (seg, plane) in planes.iter().enumerate() {
        // segments run most significant byte first; samples are stored little-endian
        let (sample, byte) = (seg / bps, bps - 1 - seg % bps);
        for (p, &v) in plane.iter().enumerate() {
            out[(p * h.samples + sample) * bps + byte] = v;
        }
    }
    Ok(out)
}

/// PackBits into `out`, up to `limit` bytes (a run past it is cut).
fn packbits(mut src: &[u8], out: &mut Vec<u8>, limit: usize) {
    while let Some((&n, rest)) = src.split_first() {
        if out.len() >= limit {
            break;
        }
        let n = n as i8;
        src = rest;
        if n >= 0 {
            let len = (n as usize + 1).min(src.len());
            let take = len.min(limit - out.len());
            out.extend_from_slice(&src[..take]);
            src = &src[len..];
        } else if n != -128 {
            let Some((&v, rest)) = src.split_first() else {
                break;
            };
            src = rest;
            let len = (1 - n as isize) as usize;
            let take = len.min(limit - out.len());
            out.extend(std::iter::repeat_n(v, take));
        }
    }
}

/// A JPEG frame header (SOFn): precision, height, width, components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JpegFrame {
    precision: u8,
    height: u16,
    width: u16,
    components: u8,
}

/// The frame headers of a JPEG stream, walking its markers (and skipping entropy-coded
/// data) to the end, so that no frame the decoder might read goes unchecked.
fn jpeg_frames(data: &[u8]) -> Result<Vec<JpegFrame>, String> {
    if data.get(0..2) != Some(&[0xFF, 0xD8]) {
        return Err("not a JPEG stream (no SOI marker)".into());
    }
    let mut frames = Vec::new();
    let mut i = 2;
    while i + 1 < data.len() {
        if data[i] != 0xFF {
            i += 1; // entropy-coded data (or padding) between markers
            continue;
        }
        let marker = data[i + 1];
        match marker {
            0xFF => i += 1,                      // fill byte
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2, // stuffed byte, TEM, RSTn: no length
            0xD8 => i += 2,
            0xD9 => break, // EOI
            _ => {
                let len = data
                    .get(i + 2..i + 4)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                    .ok_or("JPEG stream cut in a marker segment")?;
                if len < 2 {
                    return Err("JPEG marker segment with a length below 2".into());
                }
                let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
                if is_sof {
                    let s = data
                        .get(i + 4..i + 10)
                        .ok_or("JPEG stream cut in its frame header")?;
                    frames.push(JpegFrame {
                        precision: s[0],
                        height: u16::from_be_bytes([s[1], s[2]]),
                        width: u16::from_be_bytes([s[3], s[4]]),
                        components: s[5],
                    });
                }
                i += 2 + len;
            }
        }
    }
    Ok(frames)
}

/// JPEG by `jpeg-decoder`, after checking every frame header against the DICOM header
/// (the decoder allocates by its own header). Returns interleaved little-endian samples.
fn decode_jpeg(data: &[u8], h: &ImageHeader) -> Result<Vec<u8>, String> {
    let frames = jpeg_frames(data)?;
    if frames.is_empty() {
        return Err("JPEG stream without a frame header (SOF)".into());
    }
    for f in &frames {
        if (f.width as usize, f.height as usize) != (h.cols, h.rows) {
            return Err(format!(
                "JPEG frame is {}×{}, the header says {}×{}",
                f.width, f.height, h.cols, h.rows
            ));
        }
        if f.components as usize != h.samples {
            return Err(format!(
                "JPEG frame has {} components, the header {} samples per pixel",
                f.components, h.samples
            ));
        }
        let fits = matches!(
            (f.precision, h.bits_allocated, h.samples),
            (2..=8, 8 | 16, _) | (9..=16, 16, 1)
        );
        if !fits {
            return Err(format!(
                "unsupported JPEG precision {} with {} bits allocated and {} sample(s)",
                f.precision, h.bits_allocated, h.samples
            ));
        }
    }
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.set_max_decoding_buffer_size(MAX_FRAME_BYTES as usize);
    let pixels = decoder.decode().map_err(|e| format!("JPEG: {e}"))?;
    let wide = frames[0].precision > 8;
    Ok(match (wide, h.bits_allocated) {
        // 16-bit output is native-endian
        (true, _) => pixels
            .chunks_exact(2)
            .flat_map(|c| u16::from_ne_bytes([c[0], c[1]]).to_le_bytes())
            .collect(),
        (false, 16) => pixels.iter().flat_map(|&v| [v, 0]).collect(),
        (false, _) => pixels,
    })
}

/// The SIZ marker of a JPEG 2000 codestream (bare or in a JP2 file): image size,
/// tile count and per-component precision and subsampling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct J2kSize {
    width: u64,
    height: u64,
    tiles: u64,
    /// (precision in bits, signed, x subsampling, y subsampling) per component.
    components: Vec<(u8, bool, u8, u8)>,
}

fn j2k_codestream(data: &[u8]) -> Result<&[u8], String> {
    if data.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Ok(data);
    }
    if data.get(4..8) != Some(b"jP  ") {
        return Err("not a JPEG 2000 codestream (no SOC/SIZ markers, no JP2 signature)".into());
    }
    let mut rest = data;
    while rest.len() >= 8 {
        let lbox = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let kind = &rest[4..8];
        let (header, len) = match lbox {
            0 => (8, rest.len() as u64),
            1 => {
                let x = rest.get(8..16).ok_or("JP2 box cut short")?;
                let mut b = [0u8; 8];
                b.copy_from_slice(x);
                (16, u64::from_be_bytes(b))
            }
            n => (8, n),
        };
        if len < header as u64 || len > rest.len() as u64 {
            return Err("JP2 box length past the end".into());
        }
        if kind == b"jp2c" {
            return Ok(&rest[header..len as usize]);
        }
        rest = &rest[len as usize..];
    }
    Err("JP2 file without a codestream box".into())
}

fn j2k_size(data: &[u8]) -> Result<J2kSize, String> {
    let cs = j2k_codestream(data)?;
    if !cs.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Err("JPEG 2000 codestream does not start with SOC, SIZ".into());
    }
    let siz = cs.get(4..).unwrap_or(&[]);
    let u16at = |o: usize| {
        siz.get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as u64)
    };
    let u32at = |o: usize| {
        siz.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let cut = || "JPEG 2000 SIZ marker cut short".to_string();
    // Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz
    let x = u32at(4).ok_or_else(cut)?;
    let y = u32at(8).ok_or_else(cut)?;
    let xo = u32at(12).ok_or_else(cut)?;
    let yo = u32at(16).ok_or_else(cut)?;
    let xt = u32at(20).ok_or_else(cut)?;
    let yt = u32at(24).ok_or_else(cut)?;
    let xto = u32at(28).ok_or_else(cut)?;
    let yto = u32at(32).ok_or_else(cut)?;
    let csiz = u16at(36).ok_or_else(cut)?;
    if x <= xo || y <= yo || xt == 0 || yt == 0 || xto > xo || yto > yo {
        return Err("JPEG 2000 SIZ marker with an empty image or bad tiling".into());
    }
    let tiles = (x - xto).div_ceil(xt) * (y - yto).div_ceil(yt);
    let mut components = Vec::new();
    for c in 0..csiz.min(16) as usize {
        let b = siz.get(38 + 3 * c..41 + 3 * c).ok_or_else(cut)?;
        components.push(((b[0] & 0x7F) + 1, b[0] & 0x80 != 0, b[1], b[2]));
    }
    if csiz > 16 {
        components.push((0, false, 0, 0)); // more than anyone reads; refused below
    }
    Ok(J2kSize {
        width: x - xo,
        height: y - yo,
        tiles,
        components,
    })
}

/// JPEG 2000 through dicom-rs's openjp2 adapter, after checking the codestream's SIZ
/// against the DICOM header (openjp2 allocates by it; the adapter copies by it).
fn decode_j2k(obj: &Object, frame: usize, data: &[u8], h: &ImageHeader) -> Result<Vec<u8>, String> {
    let siz = j2k_size(data)?;
    if (siz.width, siz.height) != (h.cols as u64, h.rows as u64) {
        return Err(format!(
            "JPEG 2000 image is {}×{}, the header says {}×{}",
            siz.width, siz.height, h.cols, h.rows
        ));
    }
    if siz.components.len() != h.samples {
        return Err(format!(
            "JPEG 2000 image has {} components, the header {} samples per pixel",
            siz.components.len(),
            h.samples
        ));
    }
    if siz.tiles > MAX_J2K_TILES {
        return Err(format!(
            "JPEG 2000 image in {} tiles (cxr reads up to {MAX_J2K_TILES})",
            siz.tiles
        ));
    }
    for &(precision, _, dx, dy) in &siz.components {
        if dx != 1 || dy != 1 {
            return Err("unsupported subsampled JPEG 2000 component".into());
        }
        if u32::from(precision) > h.bits_allocated {
            return Err(format!(
                "JPEG 2000 precision {precision} exceeds {} bits allocated",
                h.bits_allocated
            ));
        }
    }
    let ts = registry_entry(obj.meta().transfer_syntax())?;
    let Codec::EncapsulatedPixelData(Some(reader), _) = ts.codec() else {
        return Err(format!(
            "unsupported transfer syntax {} ({}): {}",
            ts.uid(),
            ts.name(),
            if cfg!(feature = "jpeg2000") {
                "no decoder"
            } else {
                // Off by default: fuzzing reached undefined behaviour (a null pointer
                // made into NonNull while freeing code blocks) in openjp2, a
                // machine-translated port of OpenJPEG's C.
                "this build does not decode JPEG 2000 (cxr's `jpeg2000` feature adds \
                 the pure-Rust openjp2 decoder, which fuzzing showed to hit undefined \
                 behaviour on some malformed files)"
            }
        ));
    };
    let mut out = Vec::new();
    reader
        .decode_frame(obj, frame as u32, &mut out)
        .map_err(|e| format!("JPEG 2000: {}", chain(&e)))?;
    Ok(out)
}

/// Maps one frame of interleaved (or, with `planar`, plane-by-plane) little-endian
/// samples to gray.
fn to_gray(
    raw: &[u8],
    h: &ImageHeader,
    photometric: Photometric,
    planar: bool,
    window: DicomWindow,
) -> Result<DicomFrame, String> {
    let gray = if h.samples == 1 {
        gray_frame(raw, h, window)
    } else {
        let mut luma = colour_luma(raw, h, photometric, planar)?;
        if window == DicomWindow::MinMax {
            stretch(&mut luma);
        }
        luma
    };
    Ok(DicomFrame {
        width: h.cols,
        height: h.rows,
        pixels: gray,
    })
}

/// The stored value of sample `i`: masked to Bits Stored at High Bit, sign-extended.
fn stored(raw: &[u8], i: usize, h: &ImageHeader) -> i32 {
    let word = if h.bits_allocated == 8 {
        raw[i] as u32
    } else {
        u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) as u32
    };
    let v = (word >> h.shift) & ((1u32 << h.bits_stored) - 1);
    if h.signed && v & (1 << (h.bits_stored - 1)) != 0 {
        v as i32 - (1i32 << h.bits_stored)
    } else {
        v as i32
    }
}

/// Rounds half up and clamps to 0..=255.
fn to_u8(y: f64) -> u8 {
    let r = (y + 0.5).floor();
    if r.is_nan() {
        0
    } else {
        r.clamp(0.0, 255.0) as u8
    }
}

fn gray_frame(raw: &[u8], h: &ImageHeader, window: DicomWindow) -> Vec<u8> {
    let n = h.rows * h.cols;
    let (smin, smax) = h.stored_range();
    // Stored values span at most 2^16: map each once through a table.
    let (lo, hi) = match window {
        DicomWindow::Auto => (smin, smax),
        DicomWindow::MinMax => {
            let mut range = (i32::MAX, i32::MIN);
            for i in 0..n {
                let s = stored(raw, i, h);
                range = (range.0.min(s), range.1.max(s));
            }
            range
        }
    };
    let modality = |s: i32| s as f64 * h.slope + h.intercept;
    let (xlo, xhi) = (modality(lo), modality(hi));
    let (xmin, xmax) = (xlo.min(xhi), xlo.max(xhi));
    let map = |s: i32| -> f64 {
        let x = modality(s);
        match window {
            DicomWindow::MinMax => {
                if xmax > xmin {
                    (x - xmin) / (xmax - xmin) * 255.0
                } else {
                    0.0
                }
            }
            DicomWindow::Auto => match &h.voi {
                Voi::Lut { first, bits, data } => {
                    let last = data.len() as i64 - 1;
                    let idx = (x.floor() as i64).saturating_sub(*first).clamp(0, last) as usize;
                    data[idx] as f64 * 255.0 / ((1u32 << bits) - 1) as f64
                }
                Voi::Window {
                    center,
                    width,
                    function,
                } => window_value(x, *center, *width, *function),
                Voi::Full => (s - smin) as f64 / (smax - smin) as f64 * 255.0,
            },
        }
    };
    let invert = h.photometric == Photometric::Monochrome1;
    let table: Vec<u8> = (lo..=hi)
        .map(|s| {
            let y = to_u8(map(s));
            if invert { 255 - y } else { y }
        })
        .collect();
    (0..n)
        .map(|i| table[(stored(raw, i, h) - lo) as usize])
        .collect()
}

/// PS3.3 C.11.2.1.2 / C.11.2.1.3 with output 0..255 (before rounding).
fn window_value(x: f64, center: f64, width: f64, function: VoiFunction) -> f64 {
    let (c, w) = match function {
        VoiFunction::Linear => (center - 0.5, width - 1.0),
        VoiFunction::LinearExact => (center, width),
        VoiFunction::Sigmoid => return 255.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
    };
    if x <= c - w / 2.0 {
        0.0
    } else if x > c + w / 2.0 {
        255.0
    } else {
        ((x - c) / w + 0.5) * 255.0
    }
}

/// Colour samples to gray through the `image` crate's own `to_luma8` (Rec. 709
/// weights, as `decode_image` converts a colour PNG or JPEG).
fn colour_luma(
    raw: &[u8],
    h: &ImageHeader,
    photometric: Photometric,
    planar: bool,
) -> Result<Vec<u8>, String> {
    let n = h.rows * h.cols;
    let full = ((1u32 << h.bits_stored) - 1) as f64;
    let wide = h.bits_allocated == 16;
    // a sample to 8 bits (16-bit samples scaled over the full range of Bits Stored)
    let sample8 = |i: usize| -> u8 {
        if wide {
            let v = (u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) as u32 >> h.shift)
                & ((1u32 << h.bits_stored) - 1);
            to_u8(v as f64 * 255.0 / full)
        } else {
            ((raw[i] as u32 >> h.shift) & ((1u32 << h.bits_stored) - 1)) as u8
        }
    };
    let mut rgb = Vec::with_capacity(3 * n);
    for p in 0..n {
        let [a, b, c] = if photometric == Photometric::YbrFull422 {
            // two pixels in four bytes: Y0 Y1 Cb Cr
            let pair = p / 2 * 4;
            [raw[pair + p % 2], raw[pair + 2], raw[pair + 3]]
        } else if planar {
            [sample8(p), sample8(n + p), sample8(2 * n + p)]
        } else {
            [sample8(3 * p), sample8(3 * p + 1), sample8(3 * p + 2)]
        };
        rgb.extend(match photometric {
            Photometric::YbrFull | Photometric::YbrFull422 => ybr_to_rgb(a, b, c),
            _ => [a, b, c],
        });
    }
    // sides are at most 8192 (checked), so they fit u32
    let image = image::RgbImage::from_raw(h.cols as u32, h.rows as u32, rgb)
        .ok_or("internal error: RGB buffer of the wrong size")?;
    Ok(image::DynamicImage::ImageRgb8(image).to_luma8().into_raw())
}

/// YBR_FULL to RGB as pydicom computes it (32-bit floats, round half up, clamp).
fn ybr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (y as f32, cb as f32 - 128.0, cr as f32 - 128.0);
    let g_cb = (-0.114f64 * 1.772 / 0.587) as f32;
    let g_cr = (-0.299f64 * 1.402 / 0.587) as f32;
    let r = y + 1.402f32 * cr;
    let g = y + g_cb * cb + g_cr * cr;
    let b = y + 1.772f32 * cb;
    [r, g, b].map(|v| (v + 0.5).floor().clamp(0.0, 255.0) as u8)
}

/// Stretches gray values over their own min..max (all 0 when constant).
fn stretch(v: &mut [u8]) {
    let (Some(&lo), Some(&hi)) = (v.iter().min(), v.iter().max()) else {
        return;
    };
    for x in v.iter_mut() {
        *x = if hi > lo {
            to_u8((*x - lo) as f64 * 255.0 / (hi - lo) as f64)
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_runs_and_literals() {
        let mut out = Vec::new();
        // literal of 3, run of 4 × 9, no-op, literal of 1
        packbits(&[2, 1, 2, 3, 0xFD, 9, 0x80, 0, 7], &mut out, 100);
        assert_eq!(out, [1, 2, 3, 9, 9, 9, 9, 7]);
        let mut cut = Vec::new();
        packbits(&[0xFD, 9, 0, 7], &mut cut, 2);
        assert_eq!(cut, [9, 9]);
        let mut short = Vec::new();
        packbits(&[5, 1, 2], &mut short, 100);
        assert_eq!(short, [1, 2]);
    }

    #[test]
    fn linear_window_is_the_standard_formula() {
        // PS3.3 C.11.2.1.2.1: centre 2048, width 4096 on 12 bits maps 0 → 0, 4095 → 255
        assert_eq!(
            to_u8(window_value(0.0, 2048.0, 4096.0, VoiFunction::Linear)),
            0
        );
        assert_eq!(
            to_u8(window_value(4095.0, 2048.0, 4096.0, VoiFunction::Linear)),
            255
        );
        // width 1: a threshold at c − 0.5
        assert_eq!(window_value(9.5, 10.0, 1.0, VoiFunction::Linear), 0.0);
        assert_eq!(window_value(9.6, 10.0, 1.0, VoiFunction::Linear), 255.0);
        assert_eq!(
            to_u8(window_value(10.0, 10.0, 4.0, VoiFunction::LinearExact)),
            128
        );
        assert_eq!(
            to_u8(window_value(10.0, 10.0, 4.0, VoiFunction::Sigmoid)),
            128
        );
    }

    #[test]
    fn ybr_grey_stays_grey() {
        for v in [0u8, 1, 127, 128, 254, 255] {
            assert_eq!(ybr_to_rgb(v, 128, 128), [v, v, v]);
        }
    }

    #[test]
    fn jpeg_markers_are_walked_past_entropy_data() {
        // SOI, SOF0 (8-bit, 2×3, 1 component), SOS, entropy data with FF00, EOI
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0, 2, 0, 3, 1, 1, 0x11, 0];
        j.extend([
            0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0, 0x12, 0xFF, 0x00, 0x34,
        ]);
        j.extend([0xFF, 0xD9]);
        let frames = jpeg_frames(&j).unwrap();
        assert_eq!(
            frames,
            [JpegFrame {
                precision: 8,
                height: 2,
                width: 3,
                components: 1
            }]
        );
        assert!(jpeg_frames(b"no jpeg").is_err());
        assert!(jpeg_frames(&[0xFF, 0xD8, 0xFF, 0xC0, 0]).is_err());
    }

    #[test]
    fn magic_at_128_or_0() {
        let mut b = vec![0u8; 132];
        b[128..].copy_from_slice(b"DICM");
        assert!(is_dicom(&b));
        assert!(is_dicom(b"DICM\x02\x00"));
        assert!(!is_dicom(&[0u8; 200]));
        assert!(!is_dicom(b"DIC"));
    }
}
