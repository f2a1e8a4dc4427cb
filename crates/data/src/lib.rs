//! Data for cxr: finding, decoding, checking, augmenting and batching chest X-rays.
//!
//! Key items:
//! - [`load_npz`]: MedMNIST `.npz` files (PneumoniaMNIST, or any 2-D grayscale
//!   MedMNIST set of the same layout), stored or deflated, with its own `.npy`
//!   parser; every key, dtype, shape, order and label checked, sizes checked against
//!   the archive before allocating.
//! - [`load_folder`]: the Kaggle `ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*` image
//!   folders, decoded in parallel to square 8-bit grayscale; unreadable files are
//!   listed ([`DataError::BadFiles`]) or skipped.
//! - [`decode_dicom`] / [`decode_dicom_bytes`]: DICOM files (native, deflated, RLE,
//!   JPEG; JPEG 2000 with the `jpeg2000` feature) to one 8-bit gray [`DicomFrame`] per
//!   frame, with rescale, VOI LUT / window ([`DicomWindow`]) and `MONOCHROME1` applied;
//!   header sizes and lengths checked before allocating.
//! - [`collect_inputs`], [`read_input`]: new images to predict on — image files, DICOM
//!   files and folders of them — as the square gray images a model was trained on.
//! - [`DataLocator`]: `--data`, `CXR_DATA_DIR`, `data/`, then (feature `download`)
//!   the official Zenodo file, md5-checked and written through a `.part` file.
//! - [`ImageSet`], [`Dataset`] (with [`SplitFiles`]: each image's file), [`Split`]: u8
//!   images in memory; [`ImageSet::resized`]
//!   (torch-style bilinear).
//! - [`Augment`], [`Normalize`], [`Batcher`] / [`BatcherConfig`] / [`Batch`]: seeded,
//!   optionally shuffled and augmented batches as candle tensors `[B, 1, H, W]`,
//!   reproducible from `(seed, epoch)` alone and independent of the thread count.
//! - [`Quality`]: per-image quality measures (RMS and Michelson contrast, variance
//!   of the Laplacian, brightness, entropy).
//! - [`Corruption`] and [`ImageSet::corrupted`]: seeded, graded corruptions (blur,
//!   motion blur, noise, contrast, brightness, JPEG) for robustness sweeps.
//! - [`PatientPattern`] (default [`KAGGLE_PATIENT_PATTERN`]) or [`PatientTable`] →
//!   [`Dataset::assign_patients`]: each folder image's patient ([`PatientIds`]);
//!   [`PatientIds::overlap`]: patients in more than one split;
//!   [`Dataset::val_from_train`]: a validation split drawn from train by patient,
//!   stratified and seeded.
//! - [`find_duplicates`], [`pixel_hash`], [`dhash`]: exact and near-duplicate images
//!   within and across splits; [`plan_duplicate_exclusion`] picks the training images
//!   to drop so that training shares no image with evaluation.
//!
//! Every failure is a [`DataError`] naming the file (and the npz key or image); bad
//! input never panics.
//!
//! What this crate does not do: define models, train, compute metrics, write run
//! folders, read RGB or 3-D MedMNIST sets, or verify the md5 of a local file (only
//! downloads are checked; local files are identified by their sha256 instead).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod augment;
mod batch;
mod corrupt;
mod dicom;
mod duplicates;
mod error;
mod folder;
mod imageset;
mod inputs;
mod locate;
mod npz;
mod patients;
mod quality;

pub use augment::{Augment, Normalize};
pub use batch::{Batch, Batcher, BatcherConfig};
pub use corrupt::{Corruption, MAX_SEVERITY};
pub use dicom::{DicomFrame, DicomWindow, decode_dicom, decode_dicom_bytes, is_dicom};
pub use duplicates::{
    DuplicateCount, DuplicateExclusion, DuplicateReport, NEAR_DUPLICATE_CORRELATION,
    NEAR_DUPLICATE_HAMMING, dhash, find_duplicates, pixel_hash, plan_duplicate_exclusion,
};
pub use error::{DataError, Result};
pub use folder::{decode_image, decode_image_bytes, fit_square, load_folder};
pub use imageset::{Dataset, ImageSet, PatientIds, Split, SplitFiles, resize_bilinear};
pub use inputs::{collect_inputs, read_input, read_input_bytes};
pub use locate::{
    DataLocator, PNEUMONIAMNIST_FILE, PNEUMONIAMNIST_MD5, PNEUMONIAMNIST_URL, md5_file, sha256_file,
};
pub use npz::{load_npz, load_npz_bytes};
pub use patients::{
    KAGGLE_PATIENT_PATTERN, OWN_PATIENT_PREFIX, PatientAssignment, PatientOverlap, PatientPattern,
    PatientSource, PatientTable, ValFromTrain,
};
pub use quality::Quality;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
