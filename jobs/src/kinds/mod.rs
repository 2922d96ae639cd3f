//! The product kinds.
