//! Unit tests of the `elasticsearch` sink's options, documents, bulk answers and requests.
