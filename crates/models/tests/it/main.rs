//! Integration tests for cxr-models: parity with PyTorch on the seed CNN.

mod fast_path;
mod parity;
