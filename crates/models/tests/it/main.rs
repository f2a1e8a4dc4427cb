//! Integration tests for cxr-models: parity with PyTorch on the seed CNN and
//! ResNet18, BatchNorm training semantics, weight loading and offline hub access.

mod batchnorm_fast;
mod fast_path;
mod parity;
mod resnet;
mod winograd;
