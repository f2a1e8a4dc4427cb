//! Integration tests for cxr-models: parity with PyTorch on the seed CNN.

mod parity;
