//! Data for cxr: decoding, checking, augmenting and batching chest X-rays.
//!
//! Key items:
//! - [`load_npz`]: MedMNIST `.npz` files (PneumoniaMNIST and any 2-D MedMNIST set of
//!   the same layout), every key, dtype, shape and label checked.
//! - [`load_folder`]: the Kaggle `{train,val,test}/{NORMAL,PNEUMONIA}` image folders.
//! - [`DataLocator`]: `--data`, `CXR_DATA_DIR`, `data/`, then the official download
//!   (md5-checked, written through a temporary file).
//! - [`ImageSet`], [`Dataset`], [`Split`]: u8 images in memory.
//! - [`Batcher`]: seeded, shuffled, optionally [`Augment`]ed and [`Normalize`]d
//!   batches as candle tensors.
//!
//! What this crate does not do: define models, train, or compute metrics. Every
//! error is a [`DataError`] naming the file and the key or image concerned.
#![warn(missing_docs)]

mod augment;
mod batch;
mod error;
mod folder;
mod imageset;
mod locate;
mod npz;

pub use augment::{Augment, Normalize};
pub use batch::{Batch, Batcher, BatcherConfig};
pub use error::{DataError, Result};
pub use folder::{decode_image, load_folder};
pub use imageset::{Dataset, ImageSet, Split, resize_bilinear};
pub use locate::{
    DataLocator, PNEUMONIAMNIST_FILE, PNEUMONIAMNIST_MD5, PNEUMONIAMNIST_URL, md5_file, sha256_file,
};
pub use npz::load_npz;
