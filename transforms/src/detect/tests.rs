//! Unit tests of rule loading, compilation and evaluation.
